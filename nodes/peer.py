"""Requests between nodes over Redis: "replay your archive for me", "what are your terms".

Each node serves requests addressed to it on `tec:{cluster}:requests:{node}` from a
thread of its own with its own archive connection (the loop keeps appending meanwhile).
The answer goes to a one-off list the asker waits on. A lost request (Redis restarted)
just times out, and the asker asks again: every request is idempotent.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

import redis as redis_lib

from archive import (
    DeadLetters,
    PostgresEventLog,
    PostgresSnapshotStore,
    RangeUnavailableError,
    publish_replay,
)
from archive.keys import tagged
from nodes import wire
from nodes.engine import decode_events, event_to_dict
from nodes.rejoin import term_ranges

log = logging.getLogger(__name__)


ASK_SLICE_S = 2.0  # longest single BLPOP of an answer (below the client's socket timeout)


class PeerUnavailable(Exception):
    """The peer did not answer in time."""


class BelowRetention(PeerUnavailable):
    """The peer's archive no longer holds the positions asked for: install a snapshot."""


_BELOW_RETENTION = "below_retention"


def requests_key(cluster: str, node: str) -> str:
    return f"{tagged(cluster)}:requests:{node}"


def ask(redis: redis_lib.Redis, cluster: str, peer_name: str, op: str, timeout: float, **args) -> object:
    answer_key = f"{tagged(cluster)}:answer:{uuid.uuid4().hex}"
    redis.xadd(
        requests_key(cluster, peer_name),
        {"op": op, "answer": answer_key, "args": wire.encode(args)},
        maxlen=100,
        approximate=True,
    )
    # BLPOP in slices: redis-py 8 reads with a 5 s socket timeout by default, so one
    # longer BLPOP failed with TimeoutError after 5 s whatever `timeout` said (an install
    # of a large snapshot, which takes longer to publish, never got its answer).
    deadline = time.monotonic() + timeout
    reply = None
    while reply is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PeerUnavailable(f"{peer_name} did not answer {op!r} within {timeout:.0f} s")
        reply = redis.blpop([answer_key], timeout=min(ASK_SLICE_S, max(remaining, 0.01)))
    ok, value = wire.decode(reply[1])
    if not ok and isinstance(value, list) and value[:1] == [_BELOW_RETENTION]:
        raise BelowRetention(f"{peer_name} could not {op}: {value[1]}")
    if not ok:
        raise PeerUnavailable(f"{peer_name} could not {op}: {value}")
    return value


class PeerService:
    """Answers this node's requests until stopped."""

    def __init__(self, node) -> None:
        self.node = node
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, name=f"peer-{node.config.name}", daemon=True)
        self._log: PostgresEventLog | None = None
        self._snapshots: PostgresSnapshotStore | None = None

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        redis = self.node.redis
        key = requests_key(self.node.view.cluster, self.node.config.name)
        cursor = wire.StreamCursor()
        while not self.stopping.is_set():
            try:
                reply = redis.xread({key: cursor.last_id}, count=10, block=500)
                if not reply and cursor.check_reset(redis, key):
                    log.warning("peer requests stream %s started over (Redis restarted?): reading it from the start", key)
                for _key, rows in reply or []:
                    for entry_id, fields in rows:
                        cursor.advance(entry_id)
                        self.answer(entry_id, fields)
            except redis_lib.RedisError as error:
                log.warning("peer service: Redis error %s", error)
                self.stopping.wait(0.5)
        for store in (self._log, self._snapshots):
            if store is not None:
                store.close()

    def answer(self, entry_id: bytes, fields: dict) -> None:
        try:
            op = fields[b"op"].decode()
            answer_key = fields[b"answer"].decode()
            args = wire.decode(fields[b"args"])
            if not isinstance(args, dict) or not answer_key.startswith(f"{tagged(self.node.view.cluster)}:answer:"):
                raise ValueError("not a peer request")
        except Exception as error:  # poison: set aside, never answered, never retried
            DeadLetters(self.node.redis, self.node.view.cluster, self.node.config.name).set_aside(
                "requests", entry_id, f"{type(error).__name__}: {error}", fields
            )
            return
        answered = False

        def reply(result: tuple) -> None:
            nonlocal answered
            answered = True
            with self.node.redis.pipeline(transaction=False) as pipe:
                pipe.rpush(answer_key, wire.encode(result))
                pipe.expire(answer_key, 60)
                pipe.execute()

        try:
            result = (True, self.serve(op, args, early=lambda value: reply((True, value))))
        except RangeUnavailableError as error:  # retention cut it: the asker installs a snapshot
            result = (False, [_BELOW_RETENTION, str(error)])
        except Exception as error:
            log.exception("peer request %s failed", op)
            result = (False, f"{type(error).__name__}: {error}")
        if answered:
            if not result[0]:  # the asker's read of the replay stalls, and it asks again
                log.warning("peer request %s failed after its answer: %s", op, result[1])
            return
        reply(result)

    def archive(self) -> PostgresEventLog:
        if self._log is None:
            self._log = PostgresEventLog(self.node.view.archive_location)
        return self._log

    def serve(self, op: str, args: dict, early=None) -> object:
        """The answer to one request. `early(value)`, when given, answers before serve
        returns (a replay: the asker reads while the rest is published)."""
        archive = self.archive()
        if op == "terms":
            archive.refresh_tail()
            return term_ranges(archive)
        if op == "replay":
            end, _ = archive.refresh_tail()
            start = int(args["start"])
            if start <= end:
                started = (lambda: early(end)) if early is not None else None
                publish_replay(archive, self.node.redis, self.node.view.cluster, args["node"], start, end, started=started)
            return end
        if op == "snapshot":
            from nodes import install  # it asks peers itself: imported here, not at the top

            if self._snapshots is None:
                self._snapshots = PostgresSnapshotStore(self.node.view.archive_location)
            return install.publish_snapshot(archive, self._snapshots, self.node.redis, self.node.view.cluster, args["node"])
        if op == "events":
            end, _ = archive.refresh_tail()
            limit = max(1, min(int(args.get("limit", 50)), 1000))
            entries = [e for batch in archive.read(max(1, end - limit + 1), end) for e in batch]
            events = decode_events([entry.payload for entry in entries])
            return [
                {"position": entry.position, "term": entry.term, **event_to_dict(event)}
                for entry, event in zip(entries, events, strict=True)
            ]
        if op in ("depth", "order"):
            # The engine belongs to the loop thread: ask it to run the query between two
            # batches rather than read a book it may be changing.
            return self.node.query(op, args, timeout=2.0)
        raise ValueError(f"unknown request {op!r}")
