"""A request to a peer waits for its answer as long as the asker says, on real Redis."""

from __future__ import annotations

import threading
import time
import uuid

import wire
from tests.archive.conftest import REDIS_URL
from wire import rpc
from wire.connection import RedisTarget


def test_an_answer_slower_than_the_clients_socket_timeout_still_arrives() -> None:
    # A node's client has redis-py's default socket timeout (5 s): a peer publishing a
    # large snapshot answers later than that, and the install must still get the answer.
    redis = RedisTarget.from_env(REDIS_URL).client(health_check_interval=10)  # as nodes/runtime.py
    peer_side = RedisTarget.from_env(REDIS_URL).client()
    cluster = f"t{uuid.uuid4().hex[:10]}"
    requests = rpc.requests_key(cluster, "slow")

    def answer_late() -> None:
        rows = peer_side.xread({requests: "0"}, block=10_000, count=1)
        fields = rows[0][1][0][1]
        time.sleep(6.5)
        peer_side.rpush(fields[b"answer"], wire.encode((True, 42)))

    thread = threading.Thread(target=answer_late, daemon=True)
    thread.start()
    try:
        assert rpc.ask(redis, cluster, "slow", "terms", timeout=30) == 42
    finally:
        thread.join(15)
        peer_side.delete(requests)
        redis.close()
        peer_side.close()
