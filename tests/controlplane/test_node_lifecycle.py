"""Node lifecycle in the admin and the API: the secret shown once, a fixed cluster, audited removal."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User

from controlplane.clusters import services
from controlplane.clusters.models import Cluster, Node, NodeStatus, OperatorAction


@pytest.fixture
def admin_client(client, cluster):
    client.force_login(User.objects.create_superuser("root", password="pw-root-123"))
    return client


def test_adding_a_node_in_the_admin_shows_its_secret_once(admin_client, cluster):
    response = admin_client.post(
        "/admin/clusters/node/add/",
        {"name": "alpha-4", "cluster": cluster.pk, "archive_location": "postgresql://h:5432/a4"},
    )
    assert response.status_code == 200, response.text
    assert "no-store" in response["Cache-Control"]
    secret = re.search(r'id="node-secret" type="text" readonly size="48" value="([^"]+)"', response.text).group(1)
    node = Node.objects.get(name="alpha-4")
    assert services.check_node_credentials(node, secret)
    audit = OperatorAction.objects.get(action="register_node")
    assert (audit.node, audit.actor, audit.cluster) == (node, "root", cluster)
    change_page = admin_client.get(f"/admin/clusters/node/{node.pk}/change/").text
    assert secret not in change_page


def test_the_admin_refuses_a_location_that_is_not_postgresql(admin_client, cluster):
    response = admin_client.post(
        "/admin/clusters/node/add/", {"name": "alpha-4", "cluster": cluster.pk, "archive_location": "mysql://x"}
    )
    assert "Must be a PostgreSQL URL" in response.text
    assert not Node.objects.filter(name="alpha-4").exists()


def test_a_nodes_cluster_and_name_are_read_only_after_registration(admin_client, cluster):
    other = Cluster.objects.create(name="beta")
    node = Node.objects.get(name="alpha-2")
    page = admin_client.get(f"/admin/clusters/node/{node.pk}/change/").text
    assert 'name="cluster"' not in page
    assert 'name="name"' not in page
    admin_client.post(
        f"/admin/clusters/node/{node.pk}/change/",
        {"name": "renamed", "cluster": other.pk, "archive_location": "postgresql://h:5432/moved"},
    )
    node.refresh_from_db()
    assert (node.name, node.cluster_id, node.archive_location) == ("alpha-2", cluster.pk, "postgresql://h:5432/moved")


def test_nodes_cannot_be_deleted_only_removed(admin_client, cluster):
    node = Node.objects.get(name="alpha-2")
    assert admin_client.get(f"/admin/clusters/node/{node.pk}/delete/").status_code == 403
    assert "delete_selected" not in admin_client.get("/admin/clusters/node/").text


def test_removal_in_the_admin_is_audited_once(admin_client, cluster):
    node = Node.objects.get(name="alpha-2")
    for _ in range(2):
        admin_client.post("/admin/clusters/node/", {"action": "remove_follower", "_selected_action": [node.pk]})
    assert Node.objects.get(pk=node.pk).status == NodeStatus.REMOVED
    rows = list(OperatorAction.objects.filter(action="remove_node").values_list("node__name", "actor", "term"))
    assert rows == [("alpha-2", "root", 1)]


def test_the_api_audits_registration_replicas_and_write_quorum(cluster, operator_api):
    created = operator_api.post(
        "/api/v1/nodes/", {"name": "alpha-4", "cluster": "alpha", "archive_location": "postgresql://h/a4"}, format="json"
    )
    assert created.status_code == 201
    assert created.json()["secret"]
    response = operator_api.patch("/api/v1/clusters/alpha/", {"replica_count": 3, "write_quorum": 0}, format="json")
    assert response.status_code == 200, response.content
    actions = dict(OperatorAction.objects.values_list("action", "detail"))
    assert actions["register_node"] == "registered alpha-4"
    assert actions["replica_count"].startswith("replicas 2 -> 3")
    assert actions["write_quorum"].startswith("write quorum 1 -> 0")


def test_new_clusters_take_their_timing_from_the_settings(db, settings, operator_api):
    settings.CLUSTER_HEARTBEAT_INTERVAL = 0.2
    settings.CLUSTER_FAILOVER_TIMEOUT = 1.0
    response = operator_api.post("/api/v1/clusters/", {"name": "gamma"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["heartbeat_interval"], body["failover_timeout"], body["lease"]) == (0.2, 1.0, 0.5)
    assert Cluster.objects.create(name="delta").failover_timeout == 1.0


def test_the_node_list_filters_by_cluster_name(cluster, viewer_api):
    """`?cluster=NAME` (get_queryset; there is no django-filter backend)."""
    other = Cluster.objects.create(name="beta", replica_count=0)
    services.register_node(name="beta-1", cluster=other, archive_location="postgresql://h:5432/b1")

    def names(query: str) -> list[str]:
        response = viewer_api.get(f"/api/v1/nodes/{query}")
        assert response.status_code == 200, response.content
        return sorted(row["name"] for row in response.json()["results"])

    assert names("?cluster=beta") == ["beta-1"]
    assert names("?cluster=alpha") == ["alpha-1", "alpha-2", "alpha-3"]
    assert names("") == ["alpha-1", "alpha-2", "alpha-3", "beta-1"]
    assert names("?cluster=gamma") == []
