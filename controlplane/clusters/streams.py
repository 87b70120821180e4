"""The control plane's Redis connection (fences, command streams)."""

from __future__ import annotations

import time
from functools import cache

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

from wire import rpc
from wire.connection import RedisTarget


def target() -> RedisTarget:
    """Where the control plane's Redis is (REDIS_URL, or the primary the Sentinels name)."""
    return RedisTarget(settings.REDIS_URL, settings.REDIS_SENTINELS, settings.REDIS_SENTINEL_MASTER)


@cache
def connection() -> redis.Redis:
    return target().client(health_check_interval=30)


def tasks() -> rpc.TaskSender:
    """What sends requests to the nodes (wire/rpc.py): the control plane's Celery app when
    CELERY_BROKER_URL names the broker, else a sender through the Redis the control plane
    uses now (the nodes' brokers default to their REDIS_URL; tests switch REDIS_URL)."""
    if settings.CELERY_BROKER_URL_SET:
        from controlplane.celery import app

        return app
    return _task_sender(target())


@cache
def _task_sender(where: RedisTarget) -> rpc.TaskSender:
    return rpc.task_sender(where)


def fence_connection() -> redis.Redis:
    """For the fence only (heartbeats, supervisor cycles, term changes): short timeouts, so
    that a Redis the control plane cannot reach (a partition drops packets, no error comes
    back) delays a heartbeat a quarter of a second, not past its lease: no retries either
    (redis-py's default tries 4 times, which outlasted a 1 s lease). The fence writes are
    idempotent and retried by the next heartbeat or cycle."""
    return _fence_client(target())


@cache
def _fence_client(where: RedisTarget) -> redis.Redis:  # one per target: tests switch REDIS_URL
    return where.client(
        sentinel_timeout=FENCE_TIMEOUT_S, socket_timeout=FENCE_TIMEOUT_S,
        socket_connect_timeout=FENCE_TIMEOUT_S, retry=Retry(NoBackoff(), 0),
    )  # fmt: skip


FENCE_TIMEOUT_S = 0.25  # well under a lease (1.5 s by default), far above a healthy round trip
FENCE_BACKOFF_S = 2.0  # after a failure, heartbeats leave the fence to the supervisor this long
_fence_down_until = 0.0  # time.monotonic(): heartbeats skip the fence until then


def fence_worth_trying() -> bool:
    """Whether a heartbeat should restore the fence now: not within FENCE_BACKOFF_S of a
    failure. A Redis the control plane cannot reach then costs one heartbeat in many a
    short wait (FENCE_TIMEOUT_S per Sentinel asked), not every heartbeat its lease."""
    return time.monotonic() >= _fence_down_until


def fence_failed() -> None:
    global _fence_down_until
    _fence_down_until = time.monotonic() + FENCE_BACKOFF_S
