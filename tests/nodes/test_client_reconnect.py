"""The client after its Redis connection breaks (a restart, a Sentinel failover): it asks again."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import redis as redis_lib

import wire
from controlplane.drill.children import stop_all_children
from controlplane.drill.servers import PrivateRedis
from wire.client import ClusterClient


@pytest.fixture
def restartable(tmp_path: Path):
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()
    stop_all_children()


def test_replies_reach_a_client_whose_pending_pop_died_with_redis(restartable: PrivateRedis) -> None:
    client = ClusterClient("reconnect", restartable.client(), client_id="c1")
    assert client.receive(0.05) == []  # a blocking pop is now outstanding on its connection
    restartable.restart()  # empty: the pop is gone with the old server
    with contextlib.suppress(redis_lib.ConnectionError):
        client.receive(0.05)  # notices the broken connection
    entry_id = "1-0"
    client._outstanding[entry_id] = 1
    message = wire.encode([entry_id, [[wire.RESULT_COMMITTED, 7, [], ""]]])
    restartable.client().rpush(client.reply_key, message)
    received = []
    for _ in range(20):
        received += client.receive(0.2)
        if received:
            break
    assert [got for got, _ in received] == [entry_id]
