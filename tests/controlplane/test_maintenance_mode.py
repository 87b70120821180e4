"""Maintenance mode (Patroni's pause): watched, never failed over; audited; API, admin, CLI."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.utils import timezone

from controlplane.clusters import maintenance, services, supervisor
from controlplane.clusters.models import Cluster, Node, NodeStatus, OperatorAction, RoleChange
from tests.controlplane.reports import report


def term_began_long_ago(cluster: Cluster) -> None:
    """The current term is not new: its leader gets no start-up grace."""
    RoleChange.objects.filter(cluster=cluster).update(created_at=timezone.now() - timedelta(seconds=600))


def test_a_paused_cluster_marks_silent_nodes_offline_but_keeps_its_term(cluster):
    maintenance.set_paused(cluster, True, actor=services.Actor("test"), reason="kernel upgrade")
    term_began_long_ago(cluster)
    report("alpha-1", 40, ago=600)  # the leader is silent
    report("alpha-2", 40, ago=600)
    report("alpha-3", 40)
    cluster.refresh_from_db()

    status = supervisor.run_cycle(cluster)

    cluster.refresh_from_db()
    assert (cluster.term, cluster.leader.name) == (1, "alpha-1")
    assert RoleChange.objects.filter(cluster=cluster).count() == 1
    assert "marked alpha-1, alpha-2 offline" in status
    assert "paused: leader alpha-1 silent for" in status
    assert "no automatic failover until the cluster is resumed" in cluster.status_message
    assert Node.objects.get(name="alpha-1").status == NodeStatus.OFFLINE


def test_resuming_fails_over_at_the_next_cycle(cluster):
    actor = services.Actor("test")
    maintenance.set_paused(cluster, True, actor=actor)
    term_began_long_ago(cluster)
    report("alpha-1", 40, ago=600)
    cluster.refresh_from_db()
    supervisor.run_cycle(cluster)
    maintenance.set_paused(cluster, False, actor=actor)
    cluster.refresh_from_db()

    status = supervisor.run_cycle(cluster)

    cluster.refresh_from_db()
    assert "ended its term" in status
    assert (cluster.term, cluster.leader_id) == (2, None)


def test_a_paused_leaderless_cluster_elects_nobody(cluster):
    services.end_term(cluster, actor=services.SUPERVISOR, reason="test", expected_term=1)
    report("alpha-2", 40, fence_seen=2)
    report("alpha-3", 40, fence_seen=2)
    maintenance.set_paused(cluster, True, actor=services.Actor("test"))
    cluster.refresh_from_db()
    supervisor.run_cycle(cluster)
    cluster.refresh_from_db()
    assert cluster.leader_id is None
    assert cluster.status_message.startswith("paused: no leader in term 2")


def test_pausing_twice_writes_one_audit_row(cluster):
    actor = services.Actor("test")
    maintenance.set_paused(cluster, True, actor=actor, reason="first")
    maintenance.set_paused(cluster, True, actor=actor, reason="second")
    rows = list(OperatorAction.objects.filter(cluster=cluster).values_list("action", "reason", "term"))
    assert rows == [("pause", "first", 1)]
    assert Cluster.objects.get(pk=cluster.pk).paused_reason == "first"


def test_the_api_pauses_and_resumes_for_operators_only(cluster, operator_api, viewer_api):
    assert viewer_api.post("/api/v1/clusters/alpha/pause/", {"reason": "x"}, format="json").status_code == 403
    response = operator_api.post("/api/v1/clusters/alpha/pause/", {"reason": "disk swap"}, format="json")
    assert response.status_code == 200, response.content
    assert (response.json()["paused"], response.json()["paused_reason"]) == (True, "disk swap")
    assert operator_api.post("/api/v1/clusters/alpha/pause/", {"bogus": 1}, format="json").status_code == 400
    response = operator_api.post("/api/v1/clusters/alpha/resume/", {}, format="json")
    assert response.json()["paused"] is False
    audit = viewer_api.get("/api/v1/operator-actions/?cluster=alpha").json()["results"]
    assert [(row["action"], row["actor"], row["reason"]) for row in audit] == [
        ("resume", "otto-operator", ""),
        ("pause", "otto-operator", "disk swap"),
    ]


@pytest.fixture
def admin_client(client, cluster):
    client.force_login(User.objects.create_superuser("root", password="pw-root-123"))
    return client


def test_the_admin_pauses_and_the_dashboard_shows_it(admin_client, cluster):
    page = admin_client.post(
        "/admin/clusters/cluster/", {"action": "pause", "_selected_action": [cluster.pk]}, follow=True
    )
    assert "Cluster alpha paused" in page.text
    cluster.refresh_from_db()
    assert cluster.paused
    assert OperatorAction.objects.get(cluster=cluster).actor == "root"
    data = admin_client.get("/dashboard/alpha/status.json").json()
    assert data["cluster"]["paused"] is True
    assert data["operator_actions"][0]["actor"] == "root"
    assert 'id="dash-paused"' in admin_client.get("/dashboard/alpha/").text
    assert "PAUSED" in admin_client.get(f"/admin/clusters/cluster/{cluster.pk}/change/").text


def test_the_command_line_pauses_and_lists(cluster):
    out = StringIO()
    call_command("cluster", "pause", "alpha", "--reason", "maintenance window", "--json", stdout=out)
    assert json.loads(out.getvalue()) == {"cluster": "alpha", "paused": True, "paused_reason": "maintenance window"}
    out = StringIO()
    call_command("cluster", "list", "alpha", stdout=out)
    text = out.getvalue()
    assert "PAUSED (no automatic failover)" in text
    assert "| alpha-1 | leader" in text
    out = StringIO()
    call_command("cluster", "list", "--json", stdout=out)
    listed = json.loads(out.getvalue())
    assert [c["cluster"]["name"] for c in listed] == ["alpha"]
    assert [n["name"] for n in listed[0]["nodes"]] == ["alpha-1", "alpha-2", "alpha-3"]
    out = StringIO()
    call_command("cluster", "history", "alpha", "--json", stdout=out)
    assert [row["kind"] for row in json.loads(out.getvalue())] == ["pause", "role change"]
    call_command("cluster", "resume", "alpha", stdout=StringIO())
    assert not Cluster.objects.get(name="alpha").paused
