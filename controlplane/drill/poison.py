"""Poison entries: malformed entries on the streams the nodes read, and what became of them.

DESIGN §4 "Poison input": an entry that cannot be decoded is set aside in the cluster's
dead-letter stream with a reason, and the loop goes on. The drill adds entries a buggy or
hostile writer on the Redis path could add (the issue's `XADD tec:{cluster}:commands *
r x c <msgpack 5>` among them) to the command stream, the ack stream, the live stream of
the current term and a node's request queue (a malformed `nodes.request` task), then waits until a node set each one
aside (or, for a batch whose commands cannot be decoded, until its sender got an error
result). Replay streams exist only while a follower catches up, so they get none.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import msgspec
import redis as redis_lib

import wire
from archive import dead_letter_counts
from controlplane.drill.cluster import DrillCluster
from wire import rpc
from wire.keys import keys

POISON_STREAMS = ("commands", "acks", "events", "requests")


@dataclass(frozen=True)
class PoisonEntry:
    stream: str  # as the dead letters name it: commands, acks, events, requests
    key: str
    entry_id: str
    fields: dict
    expect: str  # "deadletter", or "error_reply" (the sender is told, nothing is set aside)
    reply: str | None = None  # the reply list it names, if a valid one


class Poisoner:
    """Adds poison entries and watches the dead-letter stream for them."""

    def __init__(self, redis: redis_lib.Redis, cluster: DrillCluster) -> None:
        self.redis = redis
        self.cluster = cluster
        self.name = cluster.settings.name
        self.tasks = rpc.task_sender(cluster.redis_target)  # requests reach the nodes' queues

    def add(self, stream: str, variant: int) -> PoisonEntry:
        return getattr(self, f"_{stream}")(variant)

    def await_outcome(self, entry: PoisonEntry, timeout: float = 30.0) -> tuple[str, bool]:
        """(what happened, whether it was handled) once a node set the entry aside, or the
        sender got its error result; not handled after `timeout`."""
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            try:
                found = self._error_reply(entry) if entry.expect == "error_reply" else self._dead_letter(entry)
            except redis_lib.RedisError as error:
                return f"could not tell: Redis error {error}", True
            if found:
                return f"{found[0]} after {time.monotonic() - began:.2f} s{found[1]}", True
            time.sleep(0.05)
        expected = "an error result for its sender" if entry.expect == "error_reply" else "a dead letter"
        return f"no {expected} within {timeout:.0f} s", False

    def _error_reply(self, entry: PoisonEntry) -> tuple[str, str] | None:
        answer = self.redis.lindex(entry.reply, 0)
        if answer is None:
            return None
        _, results = wire.decode(answer)
        return "its sender got an error result", f": {results[0][3][:120]}"

    def _dead_letter(self, entry: PoisonEntry) -> tuple[str, str] | None:
        for _id, letter in self.redis.xrevrange(keys(self.name).deadletter, count=500):
            if letter.get(b"id", b"").decode() == entry.entry_id and letter.get(b"stream", b"").decode() == entry.stream:
                node = letter.get(b"node", b"?").decode()
                return f"set aside by {node}", f": {letter.get(b'reason', b'').decode()[:120]}"
        return None

    def dead_letters(self) -> dict:
        """The dead-letter counts and, per poisoned entry, how often, by whom and over what
        time it was set aside."""
        counts = dead_letter_counts(self.redis, self.name)
        entries: dict[str, dict] = {}
        for letter_id, fields in self.redis.xrange(keys(self.name).deadletter):
            key = f"{fields.get(b'stream', b'?').decode()}:{fields.get(b'id', b'?').decode()}"
            at_ms = int(letter_id.split(b"-")[0])
            seen = entries.setdefault(key, {"count": 0, "nodes": {}, "first_ms": at_ms})
            node = fields.get(b"node", b"?").decode()
            seen["count"] += 1
            seen["nodes"][node] = seen["nodes"].get(node, 0) + 1
            seen["last_ms"] = at_ms
        return {"counts": counts, "entries": entries}

    # -- the entries, one kind of damage per variant ----------------------------------------

    def _commands(self, variant: int) -> PoisonEntry:
        key = wire.commands_key(self.name)
        reply = wire.reply_key(self.name, f"drill-poison-{variant}")
        encode = msgspec.msgpack.encode
        choices = [
            ({"r": "x", "c": encode(5)}, "deadletter"),  # the example
            ({"c": b"\xc1\xc1"}, "deadletter"),  # no reply list, not msgpack
            ({"r": reply, "c": b"\x92\x01"}, "deadletter"),  # truncated msgpack
            ({"r": reply, "c": encode(["not bytes", 3])}, "deadletter"),  # wrong types
            ({"r": reply, "c": b"\x00" * (wire.MAX_ENTRY_BYTES + 1)}, "deadletter"),  # huge
            ({"r": reply, "c": encode([b"\x01\x02 not a command"])}, "error_reply"),  # a bad command in a valid batch
        ]
        fields, expect = choices[variant % len(choices)]
        entry_id = self.redis.xadd(key, fields).decode()
        return PoisonEntry("commands", key, entry_id, fields, expect, reply if fields.get("r") == reply else None)

    def _acks(self, variant: int) -> PoisonEntry:
        key = wire.acks_key(self.name)
        choices = [{"n": "ghost"}, {"n": "x", "p": "NaN", "t": "1"}, {"garbage": b"\xff\xfe"}]
        fields = choices[variant % len(choices)]
        return PoisonEntry("acks", key, self.redis.xadd(key, fields).decode(), fields, "deadletter")

    def _requests(self, variant: int) -> PoisonEntry:
        """A `nodes.request` task a node cannot take: no answer list, not an object, an
        answer list of no cluster (wire/rpc.py). Its task id is the dead letter's id."""
        names = sorted(self.cluster.nodes.children)
        node = names[variant % len(names)]
        choices = [
            ["terms"],
            [7, "x", "not an object"],
            ["replay", "elsewhere", {}],
        ]
        args = choices[variant % len(choices)]
        sent = self.tasks.send_task(rpc.TASK, args=args, queue=rpc.queue(node))
        return PoisonEntry("requests", rpc.queue(node), sent.id, {"args": args}, "deadletter")

    def _events(self, variant: int) -> PoisonEntry:
        """On the live stream of the current term, with an id just above its newest entry:
        the ids there are log positions, and a time-based id (`*`) would sit above every
        position the leader will ever publish."""
        state = self.cluster.state_or_none()
        if state is None or state.leader is None:
            raise LookupError("no leader known")
        key = wire.events_key(self.name, state.term)
        choices = [
            {"term": "x", "first": "y", "events": b"\xc1"},
            {"first": "1"},
            {"term": str(state.term), "first": "5", "events": msgspec.msgpack.encode([[1, 2]])},
        ]
        fields = choices[variant % len(choices)]
        for _ in range(20):  # the leader may publish between our read and our add
            newest = self.redis.xrevrange(key, count=1)
            ms, _, seq = (newest[0][0].decode() if newest else "0-0").partition("-")
            try:
                entry_id = self.redis.xadd(key, fields, id=f"{ms}-{int(seq) + 1}").decode()
                return PoisonEntry("events", key, entry_id, fields, "deadletter")
            except redis_lib.ResponseError:
                time.sleep(0.01)
        raise LookupError(f"the live stream {key} moved on every try")
