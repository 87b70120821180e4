"""Nodes report through their heartbeat endpoint, authenticated by their own secret."""

from __future__ import annotations

import redis
from django.conf import settings
from rest_framework.test import APIClient

from archive import get_fence
from controlplane.clusters import services
from wire.keys import keys

# A report of a measured log: it names the archive (a node still opening it claims nothing).
REPORT = {"status": "live", "archived_position": 7, "applied_position": 7, "term": 1,
          "state_hash": "ab12", "state_hash_position": 7, "software_version": "0.1.0",
          "archive_id": "archive-of-alpha-9"}  # fmt: skip


def beat(name: str, secret: str | None, body=REPORT):
    client = APIClient()
    if secret is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Node {secret}")
    return client.post(f"/api/v1/nodes/{name}/heartbeat/", body, format="json")


def test_heartbeat_stores_the_report_and_answers_the_role(cluster):
    node, secret = services.register_node(name="alpha-9", cluster=cluster, archive_location="postgresql://h/db9")
    response = beat("alpha-9", secret)
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["role"], body["term"], body["leader"]) == ("follower", 1, "alpha-1")
    assert (body["replica_count"], body["write_quorum"]) == (2, 1)
    assert body["archive_location"] == "postgresql://h/db9"
    assert body["members"] == []  # only the leader counts acks, so only it gets the members
    node.refresh_from_db()
    assert (node.status, node.archived_position, node.state_hash) == ("live", 7, "ab12")
    assert node.last_heartbeat is not None


def test_unregistered_or_wrong_secret_is_refused(cluster):
    _, secret = services.register_node(name="alpha-9", cluster=cluster, archive_location="postgresql://h/db9")
    assert beat("alpha-9", None).status_code == 401
    assert beat("alpha-9", "wrong").status_code == 403
    assert beat("ghost", secret).status_code == 403
    assert "not registered" in beat("ghost", secret).json()["detail"]


def test_bad_report_is_a_400(cluster):
    _, secret = services.register_node(name="alpha-9", cluster=cluster, archive_location="postgresql://h/db9")
    response = beat("alpha-9", secret, {**REPORT, "archived_position": -1, "status": "dancing"})
    assert response.status_code == 400
    assert set(response.json()) == {"archived_position", "status"}


def test_heartbeat_restores_a_lost_fence(cluster):
    _, secret = services.register_node(name="alpha-9", cluster=cluster, archive_location="postgresql://h/db9")
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(keys("alpha").fence)
    assert beat("alpha-9", secret).status_code == 200
    assert get_fence(client, "alpha") == 1
    client.delete(keys("alpha").fence)
