"""The control plane's Redis connection (fences, command streams)."""

from __future__ import annotations

from functools import cache

import redis
from django.conf import settings


@cache
def connection() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, health_check_interval=30)
