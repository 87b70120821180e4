"""The leader's loop: commands in, events archived and published, results out on commit.

Pipeline (DESIGN §2), three threads: the loop thread reads a batch of commands from
the command stream, stamps time and runs handle+apply; the archive thread appends what
it processed to the archive (one transaction for all batches waiting: group commit),
publishes it with the fence and puts it in `pending`, while the loop goes on with the
next batch. The commit thread collects the followers' acknowledgements and, once the
leader and R followers hold a position, delivers the results of every command up to it
and acknowledges them in the command stream. A result is never sent before its commit.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import redis as redis_lib

from archive import FencedError, RedisEventPublisher
from nodes import wire
from nodes.engine import CodecError, CommandDuplicate, decode_command

log = logging.getLogger(__name__)


OLD_STREAM_TTL_S = 600
OUTBOX_SIZE = 1
REPLY_TTL_S = 300
STATUS_EVERY_S = 0.1  # the commit hash (clients' timeout messages, dashboard) at most this often


class SteppedDown(Exception):
    """The leader found it may not lead any more (fenced, or a newer term exists)."""


@dataclass
class OutBatch:
    """Processed by the loop thread, to be archived and published by the archive thread."""

    entries: list
    per_entry: list  # (stream entry id, reply key, [(status, first, count, duplicate)])
    stream_ids: list[bytes]
    last_position: int


@dataclass
class PendingBatch:
    last_position: int
    replies: list[tuple[str, bytes]]  # (reply key, message)
    stream_ids: list[bytes]


@dataclass
class FollowerProgress:
    position: int = 0
    seen_at: float = 0.0


@dataclass
class CommitTracker:
    """The commit rule, as plain values (the commit thread feeds it)."""

    term: int
    leader_position: int = 0
    followers: dict[str, FollowerProgress] = field(default_factory=dict)

    def record_ack(self, node: str, position: int, term: int, now: float) -> None:
        if term != self.term:
            return  # an ack for another leader's log says nothing about ours
        progress = self.followers.setdefault(node, FollowerProgress())
        progress.position = max(progress.position, position)
        progress.seen_at = now

    def commit_position(self, replica_count: int) -> int:
        """Highest position held by the leader and at least `replica_count` followers."""
        if replica_count <= 0:
            return self.leader_position
        positions = sorted((p.position for p in self.followers.values()), reverse=True)
        if len(positions) < replica_count:
            return 0
        return min(self.leader_position, positions[replica_count - 1])

    def live_followers(self, now: float, window: float) -> list[str]:
        return sorted(name for name, p in self.followers.items() if now - p.seen_at <= window)


class Leader:
    """Leads one term. Created when the node becomes leader, discarded when it stops."""

    def __init__(self, node, term: int) -> None:
        self.node = node
        self.term = term
        self.cluster = node.view.cluster
        self.redis = node.redis
        self.commands_key = wire.commands_key(self.cluster)
        self.acks_key = wire.acks_key(self.cluster)
        self.commit_key = wire.commit_key(self.cluster)
        self.publisher = RedisEventPublisher(
            self.redis,
            self.cluster,
            maxlen=node.config.stream_maxlen,
            stream_key=wire.events_key(self.cluster, term),
        )
        self.tracker = CommitTracker(term=term, leader_position=node.state.position)
        self.pending: deque[PendingBatch] = deque()
        self.lock = threading.Lock()  # guards tracker and pending
        self.deliver_lock = threading.Lock()  # one delivery at a time: commit never goes back
        self.stopping = threading.Event()
        self.commit_position = 0
        self._status_at = 0.0  # when the commit hash was last written
        self._status_commit = -1  # the commit position it says
        self._expiry_set: dict[str, float] = {}  # reply list -> when its TTL was last set
        self.committer = threading.Thread(
            target=self._commit_loop, name=f"commit-{node.config.name}", daemon=True
        )
        self.claimed: list = []
        # Batches processed by the loop thread, waiting for the archive thread: the
        # loop goes on with the next batch while the last one is committed to disk.
        self.outbox: queue.Queue[OutBatch] = queue.Queue(maxsize=OUTBOX_SIZE)
        self.closing = threading.Event()
        self.failure: BaseException | None = None
        self.note = ""  # a condition the archive thread reports (fence missing)
        self.archiver = threading.Thread(
            target=self._archive_loop, name=f"archive-{node.config.name}", daemon=True
        )

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        # Older terms' live streams are only read by followers still catching up.
        for key in self.redis.scan_iter(match=f"{wire.events_key(self.cluster, 0)[:-1]}*"):
            if key.decode() != self.publisher.stream_key:
                self.redis.expire(key, OLD_STREAM_TTL_S)
        try:
            self.redis.xgroup_create(self.commands_key, wire.LEADER_GROUP, id="0", mkstream=True)
        except redis_lib.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        # Commands an earlier leader read but never acknowledged are taken over first;
        # the engine answers those it already executed as duplicates (idempotency).
        start_id = "0-0"
        while True:
            start_id, claimed, *_ = self.redis.xautoclaim(
                self.commands_key, wire.LEADER_GROUP, self.node.config.name, 0, start_id, count=1000
            )
            self.claimed.extend(entry for entry in claimed if entry[1])
            if start_id in (b"0-0", "0-0"):
                break
        self.archiver.start()
        self.committer.start()

    def stop(self) -> None:
        """Archive and publish the batches already processed, then stop both threads."""
        self.closing.set()
        if self.archiver.is_alive():
            self.archiver.join(timeout=30)
        self.stopping.set()
        if self.committer.is_alive():
            self.committer.join(timeout=5)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every processed batch is archived (before a snapshot)."""
        deadline = time.monotonic() + timeout
        while (self.outbox.unfinished_tasks or not self.outbox.empty()) and time.monotonic() < deadline:
            if self.failure is not None:
                raise self.failure
            time.sleep(0.005)

    # -- the loop thread ---------------------------------------------------------------

    def cycle(self) -> str:
        """Process one batch of commands; returns what happened, as a sentence."""
        if self.failure is not None:
            raise self.failure
        if self.note:
            time.sleep(0.05)
            return self.note
        if self.claimed:
            size = self.node.config.batch_size
            entries, self.claimed = self.claimed[:size], self.claimed[size:]
        else:
            # A new command wakes the read at once; delivery is the commit thread's job,
            # so there is no reason to poll faster than that.
            reply = self.redis.xreadgroup(
                wire.LEADER_GROUP,
                self.node.config.name,
                {self.commands_key: ">"},
                count=max(1, self.node.config.batch_size // 50),
                block=100,
            )
            entries = reply[0][1] if reply else []
        if not entries:
            return f"leader of term {self.term}: idle at position {self.node.state.position}"
        count = self._process(entries)
        self.node.after_batch()
        return (
            f"leader of term {self.term}: {count} commands to position {self.node.state.position}, "
            f"committed up to {self.commit_position}"
        )

    def _process(self, entries: list) -> int:
        """handle+apply every command of the batch; the archive thread takes it from here."""
        state = self.node.state
        engine = state.engine
        now = time.time_ns()
        first_position = engine.position + 1
        events_all: list = []
        per_entry: list[tuple[bytes, str, list]] = []
        commands = 0
        for entry_id, fields in entries:
            results = []
            try:
                encoded = wire.decode(fields[b"c"])
                reply_to = fields[b"r"].decode()
            except (KeyError, ValueError, UnicodeDecodeError) as error:
                log.warning("dropping malformed command-stream entry %s: %s", entry_id, error)
                continue
            for data in encoded:
                try:
                    command = decode_command(data)
                except (CodecError, TypeError, ValueError) as error:
                    results.append((wire.RESULT_MALFORMED, 0, 0, str(error)))
                    continue
                command.timestamp = now
                start = engine.position + 1
                events = engine.process(command)
                commands += 1
                events_all.extend(events)
                duplicate = events[0] if isinstance(events[0], CommandDuplicate) else None
                results.append((wire.RESULT_COMMITTED, start, len(events), duplicate))
            per_entry.append((entry_id, reply_to, results))
        batch = OutBatch(
            entries=state.entries_for(events_all, self.term, now, first_position),
            per_entry=per_entry,
            stream_ids=[entry_id for entry_id, _ in entries],
            last_position=engine.position,
        )
        while True:  # bounded queue: the loop runs at most OUTBOX_SIZE batches ahead
            if self.failure is not None:
                raise self.failure
            try:
                self.outbox.put(batch, timeout=0.1)
                return commands
            except queue.Full:
                continue

    # -- the archive thread: append, publish, hand over to the commit thread ------------

    def _archive_loop(self) -> None:
        while True:
            try:
                batches = [self.outbox.get(timeout=0.1)]
            except queue.Empty:
                if self.closing.is_set():
                    return
                continue
            # Group commit: whatever the loop thread processed while the last append was
            # on its way to disk goes to disk together, in one transaction and one entry.
            while True:
                try:
                    batches.append(self.outbox.get_nowait())
                except queue.Empty:
                    break
            try:
                self._archive(batches)
            except Exception as error:  # the loop thread re-raises it and the node recovers
                self.failure = error
                log.warning("archive thread stopped: %s: %s", type(error).__name__, error)
                return
            finally:
                for _ in batches:
                    self.outbox.task_done()

    def _archive(self, batches: list[OutBatch]) -> None:
        entries = [entry for batch in batches for entry in batch.entries]
        if entries:
            self.node.state.append(entries)
            self._publish(entries)
        payload_at = {entry.position: entry.payload for entry in entries}
        self._hand_over(
            PendingBatch(
                last_position=batches[-1].last_position,
                replies=[reply for batch in batches for reply in self._replies(batch, payload_at)],
                stream_ids=[entry_id for batch in batches for entry_id in batch.stream_ids],
            )
        )

    def _replies(self, batch: OutBatch, payload_at: dict[int, bytes]) -> list[tuple[str, bytes]]:
        replies = []
        for entry_id, reply_to, results in batch.per_entry:
            out = []
            for status, start, count, detail in results:
                if status == wire.RESULT_MALFORMED:
                    out.append([status, 0, [], detail])
                elif detail is not None:  # a duplicate: answer with the original result
                    payloads = self._original_result(detail)
                    out.append([wire.RESULT_DUPLICATE, detail.original_position, payloads, ""])
                else:
                    out.append([status, start, [payload_at[p] for p in range(start, start + count)], ""])
            replies.append((reply_to, wire.encode([entry_id.decode(), out])))
        return replies

    def _hand_over(self, batch: PendingBatch) -> None:
        replica_count = self.node.view.replica_count
        with self.lock:
            self.tracker.leader_position = batch.last_position
            self.pending.append(batch)
            committed = self.tracker.commit_position(replica_count) >= batch.last_position
        if committed:
            # The acks arrived before we got here (or R = 0): deliver now; otherwise
            # the commit thread does when the acks come in.
            self._deliver(replica_count)

    def _publish(self, entries: list) -> None:
        """Publish with the fence. A missing fence (Redis lost it) holds the batch, and
        everything behind it, until the control plane restores the fence; a fence at
        another term means a newer leader exists: step down."""
        while True:
            try:
                self.publisher.publish(self.term, entries)
                self.note = ""
                return
            except FencedError as error:
                if error.current_fence is not None:
                    raise SteppedDown(f"publish refused: {error}") from error
                self.note = (
                    f"leader of term {self.term}: the fence is missing in Redis; holding "
                    f"{len(entries)} archived events until the control plane restores it"
                )
                if self.stopping.wait(0.05):
                    raise SteppedDown("stopped while the fence was missing") from error

    def _original_result(self, duplicate: CommandDuplicate) -> list[bytes]:
        start = duplicate.original_position
        end = start + duplicate.original_count - 1
        return [entry.payload for batch in self.node.state.log.read(start, end) for entry in batch]

    # -- the commit thread -------------------------------------------------------------

    def _commit_loop(self) -> None:
        last_id = b"$"
        try:
            recent = self.redis.xrevrange(self.acks_key, count=200)
        except redis_lib.RedisError:
            recent = []
        if recent:
            self._record_acks(list(reversed(recent)), time.monotonic())
            last_id = recent[0][0]
        while not self.stopping.is_set():
            try:
                replica_count = self.node.view.replica_count
                if replica_count > 0:
                    reply = self.redis.xread({self.acks_key: last_id}, count=1000, block=20)
                    rows = reply[0][1] if reply else []
                    if rows:
                        self._record_acks(rows, time.monotonic())
                        last_id = rows[-1][0]
                else:
                    # R = 0: the archive thread delivers each batch itself; this only
                    # keeps the commit hash fresh.
                    self.stopping.wait(0.05)
                self._deliver(replica_count)
            except redis_lib.RedisError as error:
                log.warning("commit thread: Redis error %s; retrying", error)
                time.sleep(0.1)
            except Exception:
                log.exception("commit thread failed; retrying")
                time.sleep(0.1)

    def _record_acks(self, rows: list, now: float) -> None:
        acks = []
        for _entry_id, fields in rows:
            try:
                acks.append((fields[b"n"].decode(), int(fields[b"p"]), int(fields[b"t"])))
            except (KeyError, ValueError):
                continue  # not an ack of ours
        with self.lock:
            for node, position, term in acks:
                self.tracker.record_ack(node, position, term, now)

    def _deliver(self, replica_count: int) -> None:
        with self.deliver_lock:
            self._deliver_locked(replica_count)

    def _deliver_locked(self, replica_count: int) -> None:
        with self.lock:
            commit = self.tracker.commit_position(replica_count)
            ready: list[PendingBatch] = []
            while self.pending and self.pending[0].last_position <= commit:
                ready.append(self.pending.popleft())
            live = self.tracker.live_followers(time.monotonic(), self.node.view.failover_timeout)
        now = time.monotonic()
        since = now - self._status_at
        status_due = since >= 0.5 or (since >= STATUS_EVERY_S and commit != self._status_commit)
        if not ready and not status_due:
            return  # nothing to deliver, and the status hash is fresh enough
        self.commit_position = max(self.commit_position, commit)
        # One command per client reply list, one XACK and one XDEL for the lot: the
        # per-command cost of a pipeline is most of what delivery costs.
        replies: dict[str, list[bytes]] = {}
        for batch in ready:
            for key, message in batch.replies:
                replies.setdefault(key, []).append(message)
        stream_ids = [entry_id for batch in ready for entry_id in batch.stream_ids]
        with self.redis.pipeline(transaction=False) as pipe:
            for key, messages in replies.items():
                pipe.rpush(key, *messages)
                if now - self._expiry_set.get(key, -REPLY_TTL_S) > REPLY_TTL_S / 2:
                    pipe.expire(key, REPLY_TTL_S)  # replies nobody collects go away
                    self._expiry_set[key] = now
            if stream_ids:
                pipe.xack(self.commands_key, wire.LEADER_GROUP, *stream_ids)
                pipe.xdel(self.commands_key, *stream_ids)
            if status_due:
                self._status_at, self._status_commit = now, self.commit_position
                pipe.hset(
                    self.commit_key,
                    mapping={
                        "term": self.term,
                        "leader": self.node.config.name,
                        "commit_position": self.commit_position,
                        "leader_position": self.tracker.leader_position,
                        "replica_count": replica_count,
                        "live_followers": ",".join(live),
                        "updated_ns": time.time_ns(),
                    },
                )
            pipe.execute()
        if len(self._expiry_set) > 10_000:  # forget clients long gone
            self._expiry_set = {k: t for k, t in self._expiry_set.items() if now - t < REPLY_TTL_S}
