"""Turns for the requests of people and programs, so that the nodes' heartbeats never
queue behind them (DESIGN §4, no wedges: a burst of integrators' reads must not hold a
heartbeat back past the failover timeout and get a healthy leader deposed).

Every request of a process shares its database connections (DB_POOL_MAX) and its
interpreter lock. Without turns, sixteen integrators reading the API as fast as they can
held all eight connections, with a queue behind them that the heartbeats joined: a
heartbeat waited up to 2.2 s on a slow machine, and 1.5 s on a fast one, against a
failover timeout of 2 s in the tests (3 s by default).

So at most API_CONCURRENCY requests of the API, the admin and the dashboard run at once
in a process (2: one process runs Python on one core at a time). The rest wait for a
turn, up to API_QUEUE_TIMEOUT seconds, and at most API_WAITING_MAX of them at once; past
either they get a 503 with Retry-After. The heartbeats and the probes (/healthz, /readyz,
/metrics) take no turn. A request that waits on the cluster gives its turn back with
`give_back_turn`: a submission awaiting its commit and a read answered by the leader
(they wait on Redis, and give their database connection back too), and a role change
waiting for its target (one at a time per cluster).

With turns, the same burst got as many answers (about 600 in 5 s on 2 cores) and the
heartbeats stayed at most 0.33-0.36 s old (0.2 s apart): 1.1-1.2 s with 4 turns.
"""

from __future__ import annotations

import logging
import re
import threading

from django import db
from django.conf import settings
from django.http import JsonResponse

log = logging.getLogger(__name__)
TAKES_NO_TURN = re.compile(r"^/(?:healthz|readyz|metrics)$|^/api/v1/nodes/[^/]+/heartbeat/$")


class _Turn:
    __slots__ = ("held", "turns")

    def __init__(self, turns: Turns) -> None:
        self.turns, self.held = turns, True

    def give_back(self) -> None:
        if self.held:
            self.held = False
            self.turns.slots.release()


class Turns:
    """The turns of one process: `size` at once, at most `waiting_max` waiting."""

    def __init__(self, size: int, waiting_max: int, timeout: float) -> None:
        self.size, self.waiting_max, self.timeout = size, waiting_max, timeout
        self.slots = threading.Semaphore(size)
        self.lock = threading.Lock()
        self.waiting = 0

    def take(self) -> _Turn | str:
        """A turn, or why none was given."""
        if self.slots.acquire(blocking=False):
            return _Turn(self)
        with self.lock:
            if self.waiting >= self.waiting_max:
                return f"{self.size} requests are being served and {self.waiting} wait"
            self.waiting += 1
        try:
            if self.slots.acquire(timeout=self.timeout):
                return _Turn(self)
        finally:
            with self.lock:
                self.waiting -= 1
        return f"no turn within {self.timeout:g} s ({self.size} requests served at once)"


class TakeTurns:
    """The middleware: a turn for every request but the heartbeats and the probes."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.turns = Turns(settings.API_CONCURRENCY, settings.API_WAITING_MAX, settings.API_QUEUE_TIMEOUT)
        self.static = "/" + settings.STATIC_URL.lstrip("/")

    def __call__(self, request):
        path = request.path_info
        if TAKES_NO_TURN.match(path) or path.startswith(self.static):
            return self.get_response(request)
        turn = self.turns.take()
        if isinstance(turn, str):
            log.warning("busy: %s; 503 to %s %s (API_CONCURRENCY, API_WAITING_MAX, API_QUEUE_TIMEOUT)",
                        turn, request.method, path)  # fmt: skip
            response = JsonResponse(
                {"detail": f"The control plane is busy: {turn}. Retry in a second.", "code": "busy"},
                status=503,
            )
            response["Retry-After"] = "1"
            return response
        request.turn = turn
        try:
            return self.get_response(request)
        finally:
            turn.give_back()


def give_back_turn(request) -> None:
    """Before a long wait on the cluster: let a waiting request run meanwhile."""
    turn = getattr(request, "turn", None)
    if turn is not None:
        turn.give_back()


def step_aside(request) -> None:
    """Before a wait on Redis, with nothing more to ask of the database (a submission
    awaiting its commit, a read answered by the leader): the database connection back to
    the pool and the turn back, or a burst of such waits starves the heartbeats and the
    other requests."""
    db.connection.close()
    give_back_turn(request)
