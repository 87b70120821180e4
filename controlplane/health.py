"""Probes for process supervisors and load balancers: /healthz (alive) and /readyz (can serve).

Both are unauthenticated and cheap. /healthz touches nothing: it answers while the
process can answer at all (a liveness probe must not restart a web server because the
database is down). /readyz checks what serving needs: the database, Redis, and a
supervisor cycle recently enough (the supervisor records each cycle in Redis, stamped
with the database's clock, the control plane's one clock).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import redis
from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from controlplane.clusters import streams


def supervisor_key() -> str:
    """Per control-plane database, as two control planes may share a Redis; "_" starts no
    cluster name, so no clash with tec:{cluster}:*."""
    return f"tec:_controlplane:{settings.DATABASES['default']['NAME']}:supervisor"


@cache
def probe_redis() -> redis.Redis:
    # Short timeouts: a probe that hangs is worse than one that fails.
    return streams.target().client(socket_connect_timeout=1.0, socket_timeout=1.0)


def record_supervisor_cycle() -> None:
    """Called at the end of every supervisor cycle (Celery beat task or `manage.py supervise`)."""
    from controlplane.clusters.services import db_now

    try:
        at = db_now().timestamp()
        probe_redis().set(supervisor_key(), f"{at:.3f}", ex=86_400)
    except (redis.RedisError, DatabaseError):
        pass  # /readyz reports the broken service itself


def check_database() -> tuple[bool, str, float | None]:
    from controlplane.clusters.services import db_now

    try:
        return True, "ok", db_now().timestamp()
    except DatabaseError as error:
        return False, f"database unavailable: {str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__}", None


def check_redis() -> tuple[bool, str]:
    try:
        probe_redis().ping()
    except redis.RedisError as error:
        return False, f"Redis unavailable: {error}"
    return True, "ok"


def check_supervisor(now: float | None) -> tuple[bool, str]:
    try:
        raw = probe_redis().get(supervisor_key())
    except redis.RedisError:
        return False, "unknown: Redis unavailable"
    if raw is None:
        return False, "no supervisor cycle recorded: is the supervisor (Celery beat + worker) running?"
    if now is None:
        return False, "unknown: the database's clock is unavailable"
    age = now - float(raw)
    if age > settings.SUPERVISOR_STALE_AFTER:
        return False, f"last supervisor cycle {age:.1f} s ago (more than {settings.SUPERVISOR_STALE_AFTER:.0f} s)"
    return True, f"last cycle {max(age, 0.0):.1f} s ago"


def readiness() -> tuple[bool, dict[str, Any]]:
    database_ok, database, now = check_database()
    redis_ok, redis_text = check_redis()
    supervisor_ok, supervisor = check_supervisor(now)
    ready = database_ok and redis_ok and supervisor_ok
    return ready, {
        "status": "ready" if ready else "not ready",
        "checks": {"database": database, "redis": redis_text, "supervisor": supervisor},
    }


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    ready, body = readiness()
    response = JsonResponse(body, status=200 if ready else 503)
    # A 503 here is the probe's answer, not a server error: keep it out of the error log
    # (Django logs every 5xx as an error unless the response says it was logged).
    response._has_been_logged = True
    return response
