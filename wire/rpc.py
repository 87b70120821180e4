"""Requests to one node over Redis: the one channel by which peers and the control plane reach a node.

A request is an entry on the node's stream `tec:{cluster}:requests:{node}`:
  op = what to do, answer = a one-off list key the asker waits on, args = msgpack dict.
The node (nodes/peer.py) answers with one msgpack message on the answer list:
  [True, result] or [False, reason] (reason ["below_retention", text] when retention cut
the positions asked for). A lost request (Redis restarted) just times out, and the asker
asks again: every request is idempotent.

Ops: from peers `terms`, `replay`, `snapshot` (publish one for installing), `events`;
from the control plane `depth`, `order`, `take_snapshot`, `status`, `refresh`, `stop`.
"""

from __future__ import annotations

import time
import uuid

import redis as redis_lib

import wire
from wire.keys import tagged

BELOW_RETENTION = "below_retention"
ASK_SLICE_S = 2.0  # longest single BLPOP of an answer (below the client's socket timeout)


class PeerUnavailable(Exception):
    """The peer did not answer in time."""


class BelowRetention(PeerUnavailable):
    """The peer's archive no longer holds the positions asked for: install a snapshot."""


def requests_key(cluster: str, node: str) -> str:
    return f"{tagged(cluster)}:requests:{node}"


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


def send(redis: redis_lib.Redis, cluster: str, peer: str, op: str, **args) -> Pending:
    answer_key = f"{answer_prefix(cluster)}{uuid.uuid4().hex}"
    redis.xadd(
        requests_key(cluster, peer),
        {"op": op, "answer": answer_key, "args": wire.encode(args)},
        maxlen=100,
        approximate=True,
    )
    return Pending(redis, peer, op, answer_key)


def ask(redis: redis_lib.Redis, cluster: str, peer: str, op: str, timeout: float, **args) -> object:
    """Send a request and wait for its answer (see Pending.get)."""
    return send(redis, cluster, peer, op, **args).get(timeout)
