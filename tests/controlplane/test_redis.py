"""The configured REDIS_URL answers a real round trip."""

from __future__ import annotations

import uuid

import redis
from django.conf import settings


def test_redis_round_trip_through_configured_url():
    client = redis.Redis.from_url(settings.REDIS_URL)
    key = f"tec:test:{uuid.uuid4().hex}"
    try:
        client.set(key, b"ping", ex=30)
        assert client.get(key) == b"ping"
        entry_id = client.xadd(key + ":stream", {b"v": b"1"})
        assert client.xrange(key + ":stream")[0][0] == entry_id
    finally:
        client.delete(key, key + ":stream")
