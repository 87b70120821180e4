"""The node's side of its requests (wire/rpc.py): answers peers and the control plane.

Requests addressed to this node are Celery tasks on its queue, run on the worker's own
thread with their own archive connection (the loop keeps appending meanwhile); queries
of the engine and snapshot requests are handed to the loop, which runs them between two
batches.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import redis as redis_lib

import wire
from archive import EventLog, RangeUnavailableError, SnapshotStore, publish_replay
from nodes import install
from nodes.context import RoleContext
from nodes.engine import decode_events, event_to_dict
from nodes.rejoin import term_ranges
from wire import rpc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeRequests:
    """What the control plane's requests ask of the node itself (the node provides them)."""

    query: Callable[[str, dict, float], object]  # an engine query, run by the loop between two batches
    take_snapshot: Callable[[float], str]  # ask the loop for a snapshot; wait for it at most so long
    status: Callable[[], str]  # what the node says it is doing
    report: Callable[[], dict]  # its heartbeat report, as it would send it now
    heartbeat_now: Callable[[], None]  # re-read the role from the control plane now


class PeerService:
    """Answers this node's requests: the worker runs each `nodes.request` task it takes
    from the node's queue through `handle`, on the worker's own thread."""

    def __init__(self, ctx: RoleContext, node: NodeRequests) -> None:
        self.ctx = ctx
        self.node = node
        self._log: EventLog | None = None
        self._snapshots: SnapshotStore | None = None

    def stop(self) -> None:
        for store in (self._log, self._snapshots):
            if store is not None:
                store.close()
        self._log = self._snapshots = None

    def handle(self, request_id: str, args: tuple, kwargs: dict) -> None:
        """One request: [op, answer list, arguments]; anything else is poison."""
        try:
            if kwargs or len(args) != 3:
                raise ValueError(f"expected [op, answer, arguments], got {len(args)} arguments and {sorted(kwargs)}")
            op, answer_key, arguments = args
            if not isinstance(op, str) or not isinstance(arguments, dict):
                raise ValueError("op must be a string and the arguments an object")
            if not isinstance(answer_key, str) or not answer_key.startswith(rpc.answer_prefix(self.ctx.view.cluster)):
                raise ValueError("the answer key is not one of this cluster's answer lists")
        except ValueError as error:  # poison: set aside, never answered
            ctx = self.ctx
            ctx.adapters.dead_letters(ctx.redis, ctx.view.cluster, ctx.name).set_aside(
                "requests", request_id or "", str(error), repr((args, kwargs))[:1000]
            )
            return
        try:
            if not self.ctx.redis.exists(rpc.wanted_key(answer_key)):
                log.info("request %s %s: its asker stopped waiting; not run", op, request_id)
                return
        except redis_lib.RedisError as error:  # it could not be answered either
            log.warning("request %s: Redis error %s; not run", op, error)
            return
        if op == "take_snapshot":  # waits for the loop's snapshot: not on this thread
            threading.Thread(target=self.reply, args=(op, arguments, answer_key), daemon=True).start()
        else:
            self.reply(op, arguments, answer_key)

    def reply(self, op: str, args: dict, answer_key: str) -> None:
        try:
            self._reply(op, args, answer_key)
        except redis_lib.RedisError as error:  # the asker times out and asks again
            log.warning("request %s: its answer could not be sent: %s", op, error)

    def _reply(self, op: str, args: dict, answer_key: str) -> None:
        answered = False

        def send(result: tuple) -> None:
            nonlocal answered
            answered = True
            with self.ctx.redis.pipeline(transaction=False) as pipe:
                pipe.rpush(answer_key, wire.encode(result))
                pipe.expire(answer_key, 60)
                pipe.execute()

        try:
            result = (True, self.serve(op, args, early=lambda value: send((True, value))))
        except RangeUnavailableError as error:  # retention cut it: the asker installs a snapshot
            result = (False, [rpc.BELOW_RETENTION, str(error)])
        except Exception as error:
            log.exception("peer request %s failed", op)
            result = (False, f"{type(error).__name__}: {error}")
        if answered:
            if not result[0]:  # the asker's read of the replay stalls, and it asks again
                log.warning("peer request %s failed after its answer: %s", op, result[1])
            return
        send(result)

    def archive(self) -> EventLog:
        if self._log is None:
            self._log = self.ctx.adapters.event_log(self.ctx.view.archive_location)
        return self._log

    def serve(self, op: str, args: dict, early=None) -> object:
        """The answer to one request. `early(value)`, when given, answers before serve
        returns (a replay: the asker reads while the rest is published)."""
        archive, ctx = self.archive(), self.ctx
        if op == "terms":
            archive.refresh_tail()
            return term_ranges(archive)
        if op == "replay":
            start = int(args["start"])
            log.info("%s asks for a replay of the archive from position %d", args["node"], start)
            end, _ = archive.refresh_tail()
            if start <= end:
                started = (lambda: early(end)) if early is not None else None
                keys = ctx.view.replication_keys
                publish_replay(
                    archive, ctx.redis, ctx.view.cluster, args["node"], start, end,
                    started=started, key=keys.signing_key if keys else None,
                )  # fmt: skip
            return end
        if op == "snapshot":
            if self._snapshots is None:
                self._snapshots = ctx.adapters.snapshot_store(ctx.view.archive_location)
            return install.publish_snapshot(archive, self._snapshots, ctx.redis, ctx.view.cluster, args["node"])
        if op == "events":
            end, _ = archive.refresh_tail()
            limit = max(1, min(int(args.get("limit", 50)), 1000))
            entries = [e for batch in archive.read(max(1, end - limit + 1), end) for e in batch]
            events = decode_events([entry.payload for entry in entries])
            return [
                {"position": entry.position, "term": entry.term, **event_to_dict(event)}
                for entry, event in zip(entries, events, strict=True)
            ]
        if op in CONTROL:
            return CONTROL[op](ctx, self.node, args)
        if op in ("depth", "order"):
            # The engine belongs to the loop thread: ask it to run the query between two
            # batches rather than read a book it may be changing.
            return self.node.query(op, args, 2.0)
        raise ValueError(f"unknown request {op!r}")


def take_snapshot(ctx: RoleContext, node: NodeRequests, args: dict) -> str:
    """Ask the node's loop to snapshot its state between two batches; wait for it."""
    return node.take_snapshot(float(args.get("timeout", 60.0)))


def status(ctx: RoleContext, node: NodeRequests, args: dict) -> dict:
    return {"node": ctx.name, "status": node.status(), **node.report()}


def refresh(ctx: RoleContext, node: NodeRequests, args: dict) -> str:
    """Re-read the role from the control plane now, not at the next heartbeat."""
    node.heartbeat_now()
    return f"node {ctx.name}: {ctx.view.role} in term {ctx.view.term}"


def stop(ctx: RoleContext, node: NodeRequests, args: dict) -> str:
    ctx.stop.set()
    return f"node {ctx.name} is stopping"


CONTROL = {"take_snapshot": take_snapshot, "status": status, "refresh": refresh, "stop": stop}
