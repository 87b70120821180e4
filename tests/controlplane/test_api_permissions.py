"""Who may read and change what through the API: the 401/403/200 matrix."""

from __future__ import annotations

import pytest

from tests.controlplane.reports import report

LEADER_URL = "/api/v1/clusters/alpha/leader/"


@pytest.mark.parametrize(
    "url", ["/api/v1/clusters/", "/api/v1/nodes/", "/api/v1/role-changes/", "/api/v1/clusters/alpha/"]
)
def test_reading_needs_an_authenticated_user(cluster, anonymous_api, viewer_api, url):
    assert anonymous_api.get(url).status_code == 401
    assert viewer_api.get(url).status_code == 200


def test_viewer_cannot_change_anything(cluster, viewer_api):
    assert viewer_api.post(LEADER_URL, {"node": "alpha-2"}, format="json").status_code == 403
    assert viewer_api.patch("/api/v1/clusters/alpha/", {"replica_count": 1}, format="json").status_code == 403
    assert viewer_api.post("/api/v1/clusters/", {"name": "gamma"}, format="json").status_code == 403
    node = {"name": "alpha-9", "cluster": "alpha", "archive_location": "postgresql://h/db"}
    assert viewer_api.post("/api/v1/nodes/", node, format="json").status_code == 403
    cluster.refresh_from_db()
    assert (cluster.term, cluster.replica_count, cluster.leader.name) == (1, 2, "alpha-1")


def test_operator_assigns_a_leader_and_the_term_goes_up_by_one(cluster, operator_api):
    # Leader alpha-1 is silent: the operator's pick is elected by the rules, from the
    # followers' reports made after the fence of term 2.
    report("alpha-2", 10, fence_seen=2)
    report("alpha-3", 10, fence_seen=2)
    body = {"node": "alpha-3", "reason": "maintenance", "timeout": 2}
    response = operator_api.post(LEADER_URL, body, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["term"] == 2
    assert response.json()["new_leader"] == "alpha-3"
    assert response.json()["actor"] == "otto-operator"
    cluster.refresh_from_db()
    assert (cluster.term, cluster.leader.name) == (2, "alpha-3")


def test_operator_changes_replica_count_and_registers_nodes(cluster, operator_api):
    response = operator_api.patch("/api/v1/clusters/alpha/", {"replica_count": 1}, format="json")
    assert response.status_code == 200, response.content
    cluster.refresh_from_db()
    assert cluster.replica_count == 1
    node = {"name": "alpha-4", "cluster": "alpha", "archive_location": "postgresql://h:5432/db4"}
    response = operator_api.post("/api/v1/nodes/", node, format="json")
    assert response.status_code == 201, response.content
    assert len(response.json()["secret"]) > 20
    assert response.json()["role"] == "follower"


def test_session_login_works_for_admin_users(cluster, client, operator):
    client.force_login(operator)
    assert client.get("/api/v1/clusters/").status_code == 200
