"""The leader's commit thread: acknowledgements in, committed results out.

It reads the followers' acknowledgements, and once the leader and W current members hold
a position (nodes.protocol.commit) it delivers the results of every batch up to it and
acknowledges their commands in the command stream, with a fenced script: once the fence
moved past our term, nothing more is delivered. A result is never sent before its commit.
The archiver hands it each archived batch (`hand_over`), and delivers it itself when the
acknowledgements came first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import redis as redis_lib

import wire
from archive.fenced import verdict
from nodes.context import RoleContext
from nodes.protocol.commit import CommitTracker
from nodes.protocol.fencing import FenceVerdict
from wire import signing
from wire.nonces import raise_marks
from wire.redisconn import DirectConnection, stream_entries

log = logging.getLogger("nodes.leader")

REPLY_TTL_S = 300
STATUS_EVERY_S = 0.1  # the commit hash (clients' timeout messages, dashboard) at most this often


class SteppedDown(Exception):
    """The leader found it may not lead any more (fenced, or a newer term exists)."""


class Trouble:
    """What the archive and commit threads report to the loop thread: the first failure,
    which the loop raises (the node then rebuilds from its archive), and a condition that
    holds the loop meanwhile (the fence missing), as its status."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.failure: BaseException | None = None
        self.note = ""

    def fail(self, error: BaseException) -> None:
        with self._lock:
            if self.failure is None:
                self.failure = error

    def check(self) -> None:
        """Raise the failure reported, if any (in the loop thread)."""
        if self.failure is not None:
            raise self.failure


@dataclass
class PendingBatch:
    last_position: int
    replies: list[tuple[str, bytes]]  # (reply key, message)
    stream_ids: list[bytes]
    archived_at: float = 0.0  # monotonic: when the leader held it (commit latency from there)
    nonces: dict[str, int] = field(default_factory=dict)  # key id -> highest batch nonce in it


@dataclass
class Delivery:
    """What one delivery sends (fenced results and acks, the status hash) and needs back."""

    ready: list[PendingBatch]
    commit: int
    commands: list[tuple]


class Committer:
    """Counts acknowledgements and delivers committed batches, for one term.

    Two locks: `lock` guards the tracker and the pending batches (the archive thread adds,
    this thread takes); `deliver_lock` lets one delivery run at a time (the archive thread
    delivers too), so the commit position never goes back.
    """

    def __init__(self, ctx: RoleContext, term: int, trouble: Trouble, stop: threading.Event) -> None:
        self.ctx, self.term, self.trouble, self.stop = ctx, term, trouble, stop
        self.cluster = ctx.view.cluster
        self.redis = ctx.redis
        self.acks_key = wire.acks_key(self.cluster)
        self.commit_key = wire.commit_key(self.cluster)
        self.commands_key = wire.commands_key(self.cluster)
        self.line = ctx.adapters.line(ctx.redis, ctx.stats)  # this thread's reads and deliveries
        self.fenced = ctx.adapters.fenced_writes(ctx.redis, self.cluster)
        self.dead_letters = ctx.adapters.dead_letters(ctx.redis, self.cluster, ctx.name)
        position = ctx.state.position
        self.tracker = CommitTracker(term=term, term_start=position + 1, leader_position=position)
        self.tracker.set_members(ctx.view.members)
        self.pending: deque[PendingBatch] = deque()
        self.lock = threading.Lock()
        self.deliver_lock = threading.Lock()
        self.commit_position = 0
        self._seen: dict[str, float] = {}  # follower -> when its last ack arrived (monotonic)
        self._ack_nonces: dict[str, tuple[int, int]] = {}  # follower -> nonce of its last ack taken (signing)
        self._fence_warned = 0.0
        # The control plane settles the election window with the lowest W this leader may
        # commit with (settled_quorum): every W it has read in its term, kept from the
        # moment it reads it, since it may use it later.
        self._lowest_quorum: int | None = None
        self._own_commit = False  # a position of our own term is committed
        self._status_at = 0.0  # when the commit hash was last written
        self._status_commit = -1  # the commit position it says
        self._until: threading.Thread | None = None
        self.thread = threading.Thread(target=self._run, name=f"commit-{ctx.name}", daemon=True)

    def start(self, until: threading.Thread) -> None:
        """Run until the leader stops and `until` (the archive thread) has finished: what
        it archives while it drains is still delivered on commit."""
        self._until = until
        self.thread.start()

    def join(self, timeout: float) -> None:
        """After the archive thread's join (it finished, or was given up on): end now."""
        self._until = None
        if self.thread.is_alive():
            self.thread.join(timeout)
        self.line.close()  # the next use (a thread that did not stop in time) connects again

    def _running(self) -> bool:
        until = self._until
        return not self.stop.is_set() or (until is not None and until.is_alive())

    def write_quorum(self) -> int:
        """The W to commit with now, from the latest heartbeat answer; remembered, since
        the settle report must cover every W this leader may still use."""
        write_quorum = self.ctx.view.write_quorum
        with self.lock:
            if self._lowest_quorum is None or write_quorum < self._lowest_quorum:
                self._lowest_quorum = write_quorum
        return write_quorum

    def settled_quorum(self, held: int) -> int | None:
        """For the heartbeat: once a position of our own term is committed, the lowest W
        read in this term and the one the view holds now (None before)."""
        with self.lock:
            if not self._own_commit:
                return None
            return min(held, self._lowest_quorum if self._lowest_quorum is not None else held)

    def hand_over(self, batch: PendingBatch, line: DirectConnection) -> None:
        """An archived batch (from the archive thread, on its connection `line`)."""
        write_quorum = self.write_quorum()
        with self.lock:
            self.tracker.leader_position = batch.last_position
            self.pending.append(batch)
            committed = self.tracker.commit_position(write_quorum) >= batch.last_position
        if committed:
            # The acks arrived before we got here (or R = 0): deliver now; otherwise
            # the commit thread does when the acks come in.
            self.deliver(write_quorum, line)

    # -- the commit thread -------------------------------------------------------------

    def _run(self) -> None:
        clock = self.ctx.clock
        cursor = wire.StreamCursor(b"$")
        try:
            recent = self.redis.xrevrange(self.acks_key, count=200)
        except redis_lib.RedisError:
            recent = []
        if recent:
            # Poison among these was set aside when it was first read: not again.
            self._record_acks(list(reversed(recent)), clock.monotonic(), set_aside=False)
            cursor.advance(recent[0][0])
        line = self.line
        while self._running():
            try:
                write_quorum = self.write_quorum()
                if write_quorum > 0:
                    # Deliver what the acks read last time committed, and read the next
                    # acks, in one round trip.
                    read = ("XREAD", "COUNT", 1000, "BLOCK", 20, "STREAMS", self.acks_key, cursor.last_id)
                    rows = stream_entries(self.deliver(write_quorum, line, then=read)[0])
                    if rows:
                        self._record_acks(rows, clock.monotonic())
                        cursor.advance(rows[-1][0])
                    elif cursor.check_reset(self.redis, self.acks_key):
                        log.warning("the ack stream started over (Redis restarted?): reading it from the start")
                else:
                    # W = 0: the archive thread delivers each batch itself; this only
                    # keeps the commit hash fresh.
                    time.sleep(0.05)
                    self.deliver(write_quorum, line)
            except redis_lib.RedisError as error:
                log.warning("commit thread: Redis error %s; retrying", error)
                time.sleep(0.1)
            except Exception:
                log.exception("commit thread failed; retrying")
                time.sleep(0.1)

    def _record_acks(self, rows: list, now: float, set_aside: bool = True) -> None:
        keys = self.ctx.view.replication_keys
        acks = []
        for entry_id, fields in rows:
            try:
                ack = (fields[b"n"].decode(), int(fields[b"p"]), int(fields[b"t"]), fields.get(b"a", b"").decode())
            except (KeyError, ValueError, UnicodeDecodeError, AttributeError) as error:
                if set_aside:
                    self.ctx.stats.count_rejected("acks")
                    self.dead_letters.set_aside("acks", entry_id, f"not an ack: {type(error).__name__}: {error}", fields)
                continue
            if keys is not None:
                refusal = signing.ack_refusal(keys, self.cluster, fields, *ack, self._ack_nonces)
                if refusal is None and set_aside and ack[2] < self.term:
                    # The fenced ack script let no ack of an older term in once the fence
                    # moved, before we were elected: this one was copied in since.
                    refusal = (signing.ACK_REPLAYED, f"replayed ack of {ack[0]} of term {ack[2]} (we lead term {self.term})")
                if refusal is not None:
                    if set_aside:  # the first 200 read at start were counted when first read
                        self.ctx.stats.count_rejected(f"acks.{refusal[0]}")
                        self.dead_letters.set_aside(f"acks.{refusal[0]}", entry_id, refusal[1], fields)
                    continue
            acks.append(ack)
        with self.lock:
            self.tracker.set_members(self.ctx.view.members)
            for node, position, term, archive_id in acks:
                if self.tracker.record_ack(node, position, term, archive_id):
                    self._seen[node] = now

    # -- delivery ------------------------------------------------------------------------

    def deliver(self, write_quorum: int, line: DirectConnection, then: tuple | None = None) -> list:
        """Deliver every committed batch (and refresh the status hash when due) on `line`,
        the calling thread's connection; `then`, a read, goes out in the same round trip
        and its reply is returned (read after the lock is let go: it may block)."""
        with self.deliver_lock:
            delivery = self._prepare_delivery(write_quorum, line)
            commands = delivery.commands if delivery else []
            if not commands and then is None:
                return []
            try:
                line.send([*commands, then] if then is not None else commands)
                replies = line.receive(len(commands))
            except BaseException:
                # Outcome unknown (the connection broke): keep the batches pending and
                # deliver them again; a client ignores a second reply to the same entry.
                if delivery and delivery.ready:
                    with self.lock:
                        self.pending.extendleft(reversed(delivery.ready))
                raise
            if delivery:
                self._finish_delivery(delivery, replies)
        return line.receive(1) if then is not None else []

    def _prepare_delivery(self, write_quorum: int, line: DirectConnection) -> Delivery | None:
        with self.lock:
            commit = self.tracker.commit_position(write_quorum)
            if commit > 0:  # a commit of our own term: all before it is held by W members
                self._own_commit = True
            ready: list[PendingBatch] = []
            while self.pending and self.pending[0].last_position <= commit:
                ready.append(self.pending.popleft())
            now = self.ctx.clock.monotonic()
            window = self.ctx.view.failover_timeout
            live = sorted(name for name, seen in self._seen.items() if now - seen <= window)
            leader_position = self.tracker.leader_position
        since = now - self._status_at
        committed = max(self.commit_position, commit)
        status_due = since >= 0.5 or (since >= STATUS_EVERY_S and committed != self._status_commit)
        if not ready and not status_due:
            return None  # nothing to deliver, and the status hash is fresh enough
        commands = [self._deliver_command(line, ready)] if ready else []
        if status_due:
            self._status_at, self._status_commit = now, committed
            commands.append(
                self.fenced.status_command(
                    line,
                    self.term,
                    self.commit_key,
                    {
                        "term": self.term,
                        "leader": self.ctx.name,
                        "commit_position": committed,
                        "leader_position": leader_position,
                        "write_quorum": write_quorum,
                        "live_followers": ",".join(live),
                        "updated_ns": self.ctx.clock.time_ns(),
                    },
                )
            )
        return Delivery(ready=ready, commit=commit, commands=commands)

    def _deliver_command(self, line: DirectConnection, ready: list[PendingBatch]) -> tuple:
        """Report the results of committed batches and acknowledge their commands, in one
        fenced script call: one RPUSH per client reply list, one XACK and XDEL for the lot."""
        replies: dict[str, list[bytes]] = {}
        for batch in ready:
            for key, message in batch.replies:
                replies.setdefault(key, []).append(message)
        stream_ids = [entry_id for batch in ready for entry_id in batch.stream_ids]
        nonces: dict[str, int] = {}
        for batch in ready:
            raise_marks(nonces, batch.nonces)
        return self.fenced.deliver_command(
            line,
            self.term,
            replies,
            commands_key=self.commands_key,
            group=wire.LEADER_GROUP,
            command_ids=stream_ids,
            reply_ttl=REPLY_TTL_S,
            nonces=nonces,
        )

    def _finish_delivery(self, delivery: Delivery, replies: list) -> None:
        """Reads the verdict of the delivery: refused, its batches stay pending, in order
        (a newer term means we step down)."""
        if delivery.ready:
            status, fence = verdict(replies[0])
            if status != FenceVerdict.OK:
                with self.lock:
                    self.pending.extendleft(reversed(delivery.ready))
                if status == FenceVerdict.DEPOSED:
                    self.trouble.fail(
                        SteppedDown(f"delivery refused: the fence is at term {fence}, past our term {self.term}")
                    )
                elif self.ctx.clock.monotonic() - self._fence_warned > 1.0:
                    self._fence_warned = self.ctx.clock.monotonic()
                    log.warning(
                        "term %d: the fence is %s; holding results until the control plane restores it",
                        self.term, status,
                    )  # fmt: skip
                return
        for batch in delivery.ready:  # acknowledged with their marks: the heartbeat reports them
            raise_marks(self.ctx.client_nonces, batch.nonces)
        before = self.commit_position
        self.commit_position = max(before, delivery.commit)
        observe = self.ctx.on_commit  # the node's metrics, if served
        if observe is not None and delivery.ready:
            now = self.ctx.clock.monotonic()
            observe([now - batch.archived_at for batch in delivery.ready], self.commit_position - before)
