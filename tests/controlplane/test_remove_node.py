"""Removing a node: followers only, never below the write quorum; API and admin alike."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from controlplane.clusters.models import Node, NodeStatus


def status_of(name: str) -> str:
    return Node.objects.get(name=name).status


def test_the_api_removes_a_follower(cluster, operator_api):
    response = operator_api.post("/api/v1/nodes/alpha-2/remove/")
    assert response.status_code == 200, response.content
    assert (response.json()["name"], response.json()["status"]) == ("alpha-2", "removed")
    assert status_of("alpha-2") == NodeStatus.REMOVED
    again = operator_api.post("/api/v1/nodes/alpha-2/remove/")
    assert again.status_code == 200  # already removed: nothing more to do


def test_the_api_refuses_the_leader_and_going_below_the_write_quorum(cluster, operator_api):
    leader = operator_api.post("/api/v1/nodes/alpha-1/remove/")
    assert leader.status_code == 409
    assert "alpha-1 is the leader of alpha; switch over first" in leader.json()["detail"]
    assert operator_api.post("/api/v1/nodes/alpha-2/remove/").status_code == 200
    last = operator_api.post("/api/v1/nodes/alpha-3/remove/")
    assert last.status_code == 409
    assert "fewer than the write quorum 1: lower the write quorum first" in last.json()["detail"]
    assert (status_of("alpha-1"), status_of("alpha-3")) == ("registered", "registered")
    assert operator_api.post("/api/v1/nodes/ghost/remove/").status_code == 404


def test_removing_needs_the_operator_permission(cluster, viewer_api):
    assert viewer_api.post("/api/v1/nodes/alpha-2/remove/").status_code == 403
    assert status_of("alpha-2") == "registered"


@pytest.fixture
def admin_client(client, cluster):
    client.force_login(User.objects.create_superuser("root", password="pw-root-123"))
    return client


def test_the_admin_removes_each_follower_and_reports_each_refusal(admin_client, cluster):
    ids = list(Node.objects.order_by("name").values_list("pk", flat=True))
    form = {"action": "remove_follower", "_selected_action": ids}
    page = admin_client.post("/admin/clusters/node/", form, follow=True)
    text = page.text
    assert "Not removed: alpha-1 is the leader of alpha; switch over first" in text
    assert "Removed alpha-2" in text
    assert "Not removed: removing alpha-3 would leave 0 follower(s), fewer than the write quorum 1" in text
    assert [status_of(name) for name in ("alpha-1", "alpha-2", "alpha-3")] == [
        "registered", "removed", "registered",
    ]  # fmt: skip
