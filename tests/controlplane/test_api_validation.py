"""Bad input gets 400 with a message per field, and changes nothing."""

from __future__ import annotations

from controlplane.clusters.models import Cluster, Node


def test_unknown_and_read_only_fields_are_refused(cluster, operator_api):
    response = operator_api.patch(
        "/api/v1/clusters/alpha/", {"replica_count": 1, "colour": "red", "term": 99}, format="json"
    )
    assert response.status_code == 400
    assert set(response.json()) == {"colour", "term"}
    cluster.refresh_from_db()
    assert (cluster.replica_count, cluster.term) == (2, 1)


def test_invalid_values_get_per_field_messages(cluster, operator_api):
    response = operator_api.post(
        "/api/v1/clusters/",
        {"name": "Bad Name!", "replica_count": -1, "heartbeat_interval": "often"},
        format="json",
    )
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"name", "replica_count", "heartbeat_interval"}
    assert not Cluster.objects.filter(name__iexact="bad name!").exists()


def test_failover_timeout_must_exceed_two_heartbeats(cluster, operator_api):
    response = operator_api.patch(
        "/api/v1/clusters/alpha/", {"heartbeat_interval": 2, "failover_timeout": 3}, format="json"
    )
    assert response.status_code == 400
    assert "failover_timeout" in response.json()


def test_node_registration_validation(cluster, operator_api):
    response = operator_api.post(
        "/api/v1/nodes/",
        {"name": "alpha-1", "cluster": "nope", "archive_location": "mysql://x"},
        format="json",
    )
    assert response.status_code == 400
    assert set(response.json()) == {"name", "cluster", "archive_location"}
    assert Node.objects.count() == 3


def test_leader_assignment_errors(cluster, operator_api):
    url = "/api/v1/clusters/alpha/leader/"
    missing = operator_api.post(url, {}, format="json")
    assert missing.status_code == 400
    assert "node" in missing.json()
    stranger = operator_api.post(url, {"node": "ghost"}, format="json")
    assert stranger.status_code == 409
    assert "not a node of cluster alpha" in stranger.json()["detail"]
    stale = operator_api.post(url, {"node": "alpha-2", "expected_term": 7}, format="json")
    assert stale.status_code == 412
    assert operator_api.post("/api/v1/clusters/nope/leader/", {"node": "x"}, format="json").status_code == 404
    cluster.refresh_from_db()
    assert cluster.term == 1
