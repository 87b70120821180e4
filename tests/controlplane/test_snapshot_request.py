"""An operator's snapshot request goes to the node as a `nodes.request` task on its own
queue (wire/rpc.py), the one channel to a node, and its answer comes back on the answer
list the request names."""

from __future__ import annotations

import base64
import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

import wire
from controlplane.clusters import streams
from wire import rpc


def queued_requests(node: str) -> list[tuple[dict, list]]:
    """The (headers, [op, answer, arguments]) of every task waiting on the node's queue."""
    found = []
    for raw in streams.connection().lrange(rpc.queue(node), 0, -1):
        message = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        found.append((message["headers"], args))
    return found


def request_named(node: str, request_id: str) -> tuple[dict, list]:
    matching = [(headers, args) for headers, args in queued_requests(node) if args[1].endswith(request_id)]
    assert len(matching) == 1, queued_requests(node)
    return matching[0]


def test_the_api_puts_a_snapshot_request_on_the_node_queue(cluster, operator_api):
    response = operator_api.post("/api/v1/nodes/alpha-2/snapshot/")
    assert response.status_code == 202, response.content
    headers, (op, answer_key, arguments) = request_named("alpha-2", response.json()["task_id"])
    assert headers["task"] == rpc.TASK
    # Wanted for as long as its asker waits (on Redis's clock): a node that takes it
    # later drops it unrun.
    assert 0 < streams.connection().pttl(rpc.wanted_key(answer_key)) <= 60_000
    assert (op, arguments) == ("take_snapshot", {})

    # The node answers on the list the request names (nodes/peer.py); the asker reads it.
    redis = streams.connection()
    redis.rpush(answer_key, wire.encode([True, "snapshot taken at position 7"]))
    pending = rpc.Pending(redis, "alpha-2", "take_snapshot", answer_key)
    assert pending.ready()
    assert pending.get(timeout=1) == "snapshot taken at position 7"


def test_a_refused_request_is_an_error_with_the_node_reason(cluster):
    redis = streams.connection()
    pending = rpc.send(streams.tasks(), redis, "alpha", "alpha-3", "take_snapshot")
    redis.rpush(pending.answer_key, wire.encode([False, "RuntimeError: no snapshotter"]))
    with pytest.raises(rpc.PeerUnavailable, match="alpha-3 could not take_snapshot: RuntimeError: no snapshotter"):
        pending.get(timeout=1)


def test_the_command_says_when_no_node_answers(cluster):
    with pytest.raises(CommandError, match="alpha-3 did not answer within 1 s"):
        call_command("cluster", "snapshot", "alpha-3", "--timeout", "1", stdout=StringIO(), stderr=StringIO())
    out = StringIO()
    call_command("cluster", "snapshot", "alpha-3", "--no-wait", "--json", stdout=out, stderr=StringIO())
    asked = json.loads(out.getvalue())
    assert asked["status"] == "asked"
    request_named("alpha-3", asked["task_id"])
