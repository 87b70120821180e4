"""The control plane's Redis connection (fences, command streams)."""

from __future__ import annotations

from functools import cache

import redis
from django.conf import settings

from archive.connection import RedisTarget


def target() -> RedisTarget:
    """Where the control plane's Redis is (REDIS_URL, or the primary the Sentinels name)."""
    return RedisTarget(settings.REDIS_URL, settings.REDIS_SENTINELS, settings.REDIS_SENTINEL_MASTER)


@cache
def connection() -> redis.Redis:
    return target().client(health_check_interval=30)


def fence_connection() -> redis.Redis:
    """For the fence only (heartbeats, supervisor cycles, term changes): short timeouts, so
    that a Redis the control plane cannot reach (a partition drops packets, no error comes
    back) delays a heartbeat half a second, not past its lease. The fence writes are idempotent and
    retried by the next heartbeat or cycle."""
    return _fence_client(target())


@cache
def _fence_client(where: RedisTarget) -> redis.Redis:  # one per target: tests switch REDIS_URL
    return where.client(socket_timeout=FENCE_TIMEOUT_S, socket_connect_timeout=FENCE_TIMEOUT_S)


FENCE_TIMEOUT_S = 0.5  # well under a lease (1.5 s by default), far above a healthy round trip
