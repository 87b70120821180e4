"""DirectConnection.ready: whether a reply can be read within a timeout, without reading it
(the client's receive loop waits with it until its next send is due)."""

from __future__ import annotations

import threading
import uuid

import pytest
import redis
from django.conf import settings

from wire import redisconn
from wire.redisconn import DirectConnection


@pytest.fixture
def server():
    client = redis.Redis.from_url(settings.REDIS_URL)
    key = f"test:ready:{uuid.uuid4().hex}"
    yield client, key
    client.delete(key)


@pytest.mark.parametrize("select_limit", [1024, 0], ids=["select", "poll"])
def test_ready_says_whether_a_reply_is_there_without_reading_it(server, monkeypatch, select_limit):
    monkeypatch.setattr(redisconn, "_SELECT_LIMIT", select_limit)  # 0: every descriptor takes poll()
    client, key = server
    line = DirectConnection(client)
    line.call("PING")  # connected
    assert line.ready(0) is False
    assert line.ready(0.01) is False  # nothing asked: the wait ends empty

    line.send([("PING",), ("ECHO", "second")])
    assert line.ready(1.0) is True
    assert line.receive(1) == [b"PONG"]
    assert line.ready(0) is True  # the second reply, read with the first and buffered
    assert line.receive(1) == [b"second"]
    assert line.ready(0.01) is False

    # A reply that arrives while ready() waits: a blocking pop answered by another client.
    line.send([("BLPOP", key, 5)])
    pusher = threading.Timer(0.05, lambda: client.rpush(key, b"pushed"))
    pusher.start()
    try:
        assert line.ready(5.0) is True
        assert line.receive(1) == [[key.encode(), b"pushed"]]
    finally:
        pusher.join()
    line.close()
