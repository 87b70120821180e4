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
