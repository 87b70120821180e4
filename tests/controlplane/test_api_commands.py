"""The commands endpoint: validation before anything is enqueued, permissions, timeouts."""

from __future__ import annotations

import pytest
import redis
from django.conf import settings

import wire


@pytest.fixture
def command_stream(cluster):
    client = redis.Redis.from_url(settings.REDIS_URL)
    key = wire.commands_key(cluster.name)
    client.delete(key, wire.commit_key(cluster.name))
    yield client, key
    client.delete(key, wire.commit_key(cluster.name))


URL = "/api/v1/clusters/alpha/commands/"
GOOD = {
    "type": "place_order", "client_id": "c1", "client_seq": 1, "account": "a1",
    "symbol": "ACME", "side": "buy", "qty": 10, "price": 100,
}  # fmt: skip


def test_malformed_commands_get_400_per_field_and_nothing_is_enqueued(operator_api, command_stream):
    client, key = command_stream
    bad = {**GOOD, "qty": -3, "price": "cheap", "colour": "red"}
    response = operator_api.post(URL, {"commands": [GOOD, bad, {"type": "launch"}]}, format="json")
    assert response.status_code == 400
    errors = response.json()["commands"]
    assert set(errors) == {"1", "2"}
    assert set(errors["1"]) == {"qty", "price", "colour"}
    assert "unknown command type" in errors["2"]["type"]
    assert client.xlen(key) == 0


def test_batch_shape_errors(operator_api, command_stream):
    client, key = command_stream
    assert operator_api.post(URL, {"commands": []}, format="json").status_code == 400
    assert operator_api.post(URL, {"commands": [GOOD], "timeout": 0}, format="json").status_code == 400
    assert operator_api.post(URL, {"commands": "x"}, format="json").status_code == 400
    assert client.xlen(key) == 0


def test_submitting_needs_the_submit_permission(viewer_api, anonymous_api, command_stream):
    client, key = command_stream
    assert anonymous_api.post(URL, GOOD, format="json").status_code == 401
    assert viewer_api.post(URL, GOOD, format="json").status_code == 403
    assert client.xlen(key) == 0


def test_without_a_leader_the_client_gets_a_clear_timeout(operator_api, command_stream):
    client, key = command_stream
    response = operator_api.post(URL, {"commands": [GOOD], "timeout": 0.3}, format="json")
    assert response.status_code == 504
    assert "has no leader reporting" in response.json()["detail"]
    assert client.xlen(key) == 1  # kept for the next leader


def test_fewer_live_followers_than_the_write_quorum_is_a_503(operator_api, command_stream):
    import time

    client, _key = command_stream
    client.hset(
        wire.commit_key("alpha"),
        mapping={"term": 1, "leader": "alpha-1", "commit_position": 0, "leader_position": 3,
                 "write_quorum": 2, "live_followers": "alpha-2", "updated_ns": time.time_ns()},
    )  # fmt: skip
    response = operator_api.post(URL, {"commands": [GOOD], "timeout": 0.3}, format="json")
    assert response.status_code == 503
    assert "not enough replicas: the write quorum is 2 but only 1" in response.json()["detail"]
