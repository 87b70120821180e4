"""Requests to one node: the one channel by which peers and the control plane reach a node.

A request is a Celery task, `nodes.request`, on the node's own queue `node.NAME` (the
worker that runs the node consumes it; it is the only task a node runs):
  args = [op, answer, arguments]: what to do, a one-off list key the asker waits on, and
  a JSON object.
The node (nodes/peer.py) answers with one msgpack message on the answer list:
  [True, result] or [False, reason] (reason ["below_retention", text] when retention cut
the positions asked for). A lost request (broker restarted, node down) just times out,
and the asker asks again: every request is idempotent. A request that waited in the
queue longer than its asker waits for the answer is dropped unrun (`wanted_key`).

Ops: from peers `terms`, `replay`, `snapshot` (publish one for installing), `events`;
from the control plane `depth`, `order`, `take_snapshot`, `status`, `refresh`, `stop`.
"""

from __future__ import annotations

import time
import uuid
from typing import Protocol

import redis as redis_lib

import wire
from base.env import redis_tls_options
from wire.connection import RedisTarget
from wire.keys import tagged

BELOW_RETENTION = "below_retention"
ASK_SLICE_S = 2.0  # longest single BLPOP of an answer (below the client's socket timeout)


TASK = "nodes.request"


class TaskSender(Protocol):
    """A Celery app (the nodes' own, or the control plane's): what sends a request."""

    def send_task(self, name: str, args: list, **options: object) -> object: ...


def broker_settings(target: RedisTarget, url: str | None = None) -> dict[str, object]:
    """The Celery settings requests travel by: the broker at `url` (by default the
    target's own), with the TLS options a rediss:// URL needs and the target's transport
    options (its Sentinels); tasks in JSON. The nodes' app (nodes/celery_app.py) and
    `task_sender` both take them from here, so a node and those who ask it cannot drift."""
    url = url or target.celery_url()
    return {
        "broker_url": url,
        "broker_use_ssl": redis_tls_options(url),
        "broker_transport_options": target.celery_transport_options(),
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
    }


def task_sender(target: RedisTarget) -> TaskSender:
    """A Celery app that only sends requests, through this Redis (or the primary its
    Sentinels name): for a process that reaches nodes on a Redis of its own choosing (a
    drill's private one) rather than through its configured broker."""
    from celery import Celery

    app = Celery("tec-requests", fixups=[], set_as_current=False)
    app.conf.update(broker_settings(target))
    return app


def queue(node: str) -> str:
    """The node's own Celery queue: its worker consumes it and nothing else."""
    return f"node.{node}"


class PeerUnavailable(Exception):
    """The peer did not answer in time."""


class BelowRetention(PeerUnavailable):
    """The peer's archive no longer holds the positions asked for: install a snapshot."""


def answer_prefix(cluster: str) -> str:
    """Every answer list of the cluster starts so; a request naming another key is poison."""
    return f"{tagged(cluster)}:answer:"


class Pending:
    """A request sent and not yet answered: `ready()` looks, `get(timeout)` waits."""

    def __init__(self, redis: redis_lib.Redis, peer: str, op: str, answer_key: str) -> None:
        self.redis, self.peer, self.op, self.answer_key = redis, peer, op, answer_key

    @property
    def id(self) -> str:
        return self.answer_key.rsplit(":", 1)[-1]

    def ready(self) -> bool:
        return bool(self.redis.llen(self.answer_key))

    def get(self, timeout: float) -> object:
        """The answer; PeerUnavailable (BelowRetention) when there is none in time or the
        peer could not do it."""
        # BLPOP in slices: redis-py 8 reads with a 5 s socket timeout by default, so one
        # longer BLPOP failed with TimeoutError after 5 s whatever `timeout` said (an install
        # of a large snapshot, which takes longer to publish, never got its answer).
        deadline = time.monotonic() + timeout
        reply = None
        while reply is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PeerUnavailable(f"{self.peer} did not answer {self.op!r} within {timeout:.0f} s")
            reply = self.redis.blpop([self.answer_key], timeout=min(ASK_SLICE_S, max(remaining, 0.01)))
        ok, value = wire.decode(reply[1])
        if not ok and isinstance(value, list) and value[:1] == [BELOW_RETENTION]:
            raise BelowRetention(f"{self.peer} could not {self.op}: {value[1]}")
        if not ok:
            raise PeerUnavailable(f"{self.peer} could not {self.op}: {value}")
        return value


def send(
    tasks: TaskSender, redis: redis_lib.Redis, cluster: str, peer: str, op: str, *, expires: float = 60.0, **args
) -> Pending:
    """Send a request to `peer`; its answer will come on a list read through `redis`.

    A request the node takes after `expires` seconds is dropped unrun (its asker gave up):
    the asker marks the request wanted for that long, on Redis's own clock, since the
    clocks of the asker and the node need not agree (Celery's `expires` compares them)."""
    answer_key = f"{answer_prefix(cluster)}{uuid.uuid4().hex}"
    redis.set(wanted_key(answer_key), 1, px=max(1, int(expires * 1000)))
    tasks.send_task(TASK, args=[op, answer_key, args], queue=queue(peer))
    return Pending(redis, peer, op, answer_key)


def wanted_key(answer_key: str) -> str:
    """Exists while the asker still waits for the answer on `answer_key`."""
    return f"{answer_key}:wanted"


def ask(tasks: TaskSender, redis: redis_lib.Redis, cluster: str, peer: str, op: str, timeout: float, **args) -> object:
    """Send a request and wait for its answer (see Pending.get)."""
    return send(tasks, redis, cluster, peer, op, expires=timeout, **args).get(timeout)
