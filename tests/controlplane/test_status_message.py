"""Why a cluster has no leader, in the supervisor's words, wherever operators look."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from controlplane.clusters import services, supervisor
from tests.controlplane.reports import report


@pytest.fixture
def leaderless(cluster):
    """alpha-1 went silent: its term ended and the election of term 2 waits for reports."""
    report("alpha-1", 40, ago=600)
    services.end_term(cluster, actor=services.SUPERVISOR, reason="leader alpha-1 silent", expected_term=1)
    report("alpha-2", 40, fence_seen=2)
    report("alpha-3", 40, fence_seen=1)  # its last report was built before the fence moved
    cluster.refresh_from_db()
    status = supervisor.run_cycle(cluster)  # cannot elect yet
    assert "no leader in term 2: waiting for 1 more follower report" in status
    cluster.refresh_from_db()
    assert cluster.leader_id is None
    return cluster


def test_the_api_says_why_there_is_no_leader(leaderless, viewer_api):
    body = viewer_api.get("/api/v1/clusters/alpha/").json()
    assert (body["leader"], body["last_leader"], body["status"]) == (None, "alpha-1", "no_safe_election")
    assert body["status_message"] == leaderless.status_message
    assert body["status_message"].startswith("waiting for 1 more follower report: need 2 of 2 after term 2")
    assert "not yet reported since the fence moved: alpha-1, alpha-3" in body["status_message"]


def test_the_dashboard_json_says_why_there_is_no_leader(leaderless, client, operator):
    operator.is_staff = True
    operator.save(update_fields=["is_staff"])
    client.force_login(operator)
    data = client.get("/dashboard/alpha/status.json").json()
    assert data["cluster"]["leader"] is None
    assert data["cluster"]["why_no_leader"] == leaderless.status_message
    assert data["cluster"]["status_message"] == leaderless.status_message
    nodes = {node["name"]: node for node in data["nodes"]}
    assert (nodes["alpha-2"]["last_term"], nodes["alpha-2"]["resyncing"]) == (1, False)
    page = client.get("/dashboard/alpha/")
    assert "Why no leader" in page.text
    assert "waiting for 1 more follower report" in page.text


def test_the_dashboard_marks_a_new_empty_replica(cluster, client, admin_user):
    report("alpha-3", 0, last_term=0, resyncing=True)
    client.force_login(admin_user)
    data = client.get("/dashboard/alpha/status.json").json()
    assert {node["name"]: node["resyncing"] for node in data["nodes"]} == {
        "alpha-1": False, "alpha-2": False, "alpha-3": True,
    }  # fmt: skip
    assert data["cluster"]["why_no_leader"] is None
    assert "new empty replica" in client.get("/dashboard/alpha/").text


def test_the_admin_makes_the_reason_stand_out(leaderless, client):
    client.force_login(User.objects.create_superuser("root", password="pw-root-123"))
    for url in ("/admin/clusters/cluster/", f"/admin/clusters/cluster/{leaderless.pk}/change/"):
        text = client.get(url).text
        assert "Why no leader: waiting for 1 more follower report" in text, url


def test_a_cluster_that_never_had_a_leader_says_so(db, viewer_api, admin_user, client):
    from controlplane.clusters.models import Cluster

    Cluster.objects.create(name="gamma")
    client.force_login(admin_user)
    assert client.get("/dashboard/gamma/status.json").json()["cluster"]["why_no_leader"] == (
        "no leader elected yet: the supervisor elects one once the nodes report"
    )
