"""A request to a peer waits for its answer as long as the asker says, on real Redis."""

from __future__ import annotations

import base64
import json
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
    target = RedisTarget.from_env(REDIS_URL)
    redis = target.client(health_check_interval=10)  # as nodes/runtime.py
    peer_side = target.client()
    cluster = f"t{uuid.uuid4().hex[:10]}"
    queue = rpc.queue(f"{cluster}-slow")

    def answer_late() -> None:
        # The peer takes the request off its queue as its Celery worker would.
        _queue, raw = peer_side.brpop([queue], timeout=10)
        _op, answer_key, _arguments = json.loads(base64.b64decode(json.loads(raw)["body"]))[0]
        time.sleep(6.5)
        peer_side.rpush(answer_key, wire.encode((True, 42)))

    thread = threading.Thread(target=answer_late, daemon=True)
    thread.start()
    try:
        assert rpc.ask(rpc.task_sender(target), redis, cluster, f"{cluster}-slow", "terms", timeout=30) == 42
    finally:
        thread.join(15)
        peer_side.delete(queue)
        redis.close()
        peer_side.close()
