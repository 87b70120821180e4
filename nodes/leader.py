"""The leader's loop: commands in, events archived and published, results out on commit.

Pipeline (DESIGN §2), three threads: the loop thread reads a batch of commands from
the command stream, stamps time and runs handle+apply; the archive thread appends what
it processed to the archive (one transaction for all batches waiting: group commit),
publishes it with the fence and puts it in `pending`, while the loop goes on with the
next batch. The commit thread collects the followers' acknowledgements and, once the
leader and W current members hold a position (nodes.protocol.commit), delivers the
results of every command up to it and acknowledges them in the command stream, with a
fenced script: once the fence moved past our term, nothing more is delivered. A result
is never sent before its commit.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass

import redis as redis_lib

import wire
from archive import DeadLetters, FencedError, FencedWrites, RedisEventPublisher
from archive.fenced import verdict
from nodes.engine import CommandDuplicate, decode_command
from nodes.protocol.commit import CommitTracker
from nodes.protocol.fencing import FenceVerdict
from wire import signing
from wire.admission import Admission
from wire.redisconn import DirectConnection, stream_entries

log = logging.getLogger(__name__)


OLD_STREAM_TTL_S = 600
OUTBOX_SIZE = 1
REPLY_TTL_S = 300
DUPLICATE_READ_GAP = 10_000  # duplicates' ranges this close are read in one archive read
STATUS_EVERY_S = 0.1  # the commit hash (clients' timeout messages, dashboard) at most this often


class SteppedDown(Exception):
    """The leader found it may not lead any more (fenced, or a newer term exists)."""


class PoisonCommand(Exception):
    """A command the engine failed on (a bug): set it aside, rebuild from the archive."""

    def __init__(self, entry_id: bytes, reply_to: str, reason: str, data: bytes, commands: int) -> None:
        super().__init__(f"command in entry {entry_id!r} failed in the engine: {reason}")
        self.entry_id, self.reply_to, self.reason, self.data = entry_id, reply_to, reason, data
        self.commands = commands  # in the entry: each gets the error result

    def set_aside(self, redis, cluster: str, dead_letters: DeadLetters) -> None:
        """Dead-letter the entry, take it out of the command stream, tell its sender."""
        dead_letters.set_aside("commands", self.entry_id, f"the engine failed on it: {self.reason}", self.data)
        result = [wire.RESULT_MALFORMED, 0, [], f"set aside: the engine failed on a command of this batch ({self.reason})"]
        with redis.pipeline(transaction=False) as pipe:
            pipe.xack(wire.commands_key(cluster), wire.LEADER_GROUP, self.entry_id)
            pipe.xdel(wire.commands_key(cluster), self.entry_id)
            pipe.rpush(self.reply_to, wire.encode([self.entry_id.decode(), [result] * self.commands]))
            pipe.expire(self.reply_to, REPLY_TTL_S)
            pipe.execute()


def _reply_list(cluster: str, fields: dict) -> str:
    """The reply list a poison entry names, if it is a valid one of the cluster."""
    try:
        reply_to = fields[b"r"].decode()
    except (KeyError, UnicodeDecodeError, AttributeError):
        return ""
    return reply_to if reply_to.startswith(wire.reply_key(cluster, "")) and len(reply_to) <= 200 else ""


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
    archived_at: float = 0.0  # monotonic: when the leader held it (commit latency from there)


@dataclass
class Delivery:
    """What one delivery sends (fenced results and acks, the status hash) and needs back."""

    ready: list[PendingBatch]
    commit: int
    commands: list[tuple]


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
        # Each thread has a Redis connection of its own, without redis-py's per-call cost
        # (wire.redisconn): the loop reads commands, the archive thread publishes, the
        # commit thread reads acks and delivers in one round trip.
        self.stats = node.stats
        self.read_line = DirectConnection(self.redis, node.stats)
        self.archive_line = DirectConnection(self.redis, node.stats)
        self.commit_line = DirectConnection(self.redis, node.stats)
        self.publisher = RedisEventPublisher(
            self.redis,
            self.cluster,
            maxlen=node.config.stream_maxlen,
            window_s=node.config.stream_window_s,
            stream_key=wire.events_key(self.cluster, term),
            line=self.archive_line,
        )
        self._policy: dict | None = None  # the trading policy the admission was built from
        self.admission: Admission | None = None
        self.tracker = CommitTracker(
            term=term, term_start=node.state.position + 1, leader_position=node.state.position
        )
        self.tracker.set_members(node.view.members)
        self.fenced = FencedWrites(self.redis, self.cluster)
        self.dead_letters = DeadLetters(self.redis, self.cluster, node.config.name)
        self._seen: dict[str, float] = {}  # follower -> when its last ack arrived (monotonic)
        self._ack_nonces: dict[str, int] = {}  # follower -> nonce of its last ack taken (signing)
        self._fence_warned = 0.0
        # The control plane settles the election window with the lowest W this leader may
        # commit with (settled_quorum): every W it has read in its term, kept from the
        # moment it reads it, since it may use it later.
        self._lowest_quorum: int | None = None
        self._own_commit = False  # a position of our own term is committed
        self.pending: deque[PendingBatch] = deque()
        self.lock = threading.Lock()  # guards tracker and pending
        self.deliver_lock = threading.Lock()  # one delivery at a time: commit never goes back
        self.stopping = threading.Event()
        self.commit_position = 0
        self._status_at = 0.0  # when the commit hash was last written
        self._status_commit = -1  # the commit position it says
        self.committer = threading.Thread(
            target=self._commit_loop, name=f"commit-{node.config.name}", daemon=True
        )
        self.claimed: list = []
        self._commands_per_entry = 1.0  # in the command stream's entries, smoothed
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
        for line in (self.read_line, self.archive_line, self.commit_line):
            line.close()  # the next use (a thread that did not stop in time) connects again

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
            read = (
                "XREADGROUP", "GROUP", wire.LEADER_GROUP, self.node.config.name,
                "COUNT", self._entries_per_read(), "BLOCK", 100,
                "STREAMS", self.commands_key, ">",
            )  # fmt: skip
            entries = stream_entries(self.read_line.call(*read))
        if not entries:
            return f"leader of term {self.term}: idle at position {self.node.state.position}"
        count = self._process(entries)
        # Commands per entry, smoothed: each read takes about batch_size commands, however
        # the clients batch (one huge cycle makes every result behind it wait for it).
        self._commands_per_entry += 0.2 * (max(1, count) / len(entries) - self._commands_per_entry)
        self.stats.cycles += 1
        self.stats.items += count
        self.node.after_batch()
        return (
            f"leader of term {self.term}: {count} commands to position {self.node.state.position}, "
            f"committed up to {self.commit_position}"
        )

    def _admission(self) -> Admission | None:
        """The trading checks of the latest heartbeat answer (None: not enforced)."""
        policy = self.node.view.trading
        if policy is not self._policy:
            self._policy = policy
            self.admission = Admission.from_policy(self.cluster, policy, self.admission)
        return self.admission

    def _entries_per_read(self) -> int:
        return max(1, min(1000, round(self.node.config.batch_size / self._commands_per_entry)))

    def _process(self, entries: list) -> int:
        """handle+apply every command of the batch; the archive thread takes it from here."""
        admission = self._admission()
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
                reply_to, encoded = wire.parse_command_entry(self.cluster, fields)
            except wire.PoisonEntry as poison:
                # Set aside (DESIGN §4 "Poison input"); acknowledged with the batch, so
                # no leader reads it again. Its sender, if it named a reply list, is told.
                self.dead_letters.set_aside("commands", entry_id, str(poison), fields.get(b"c", b""))
                reply_to = _reply_list(self.cluster, fields)
                if reply_to:
                    per_entry.append((entry_id, reply_to, [(wire.RESULT_MALFORMED, 0, 0, f"entry set aside: {poison}")]))
                continue
            grant = None
            if admission is not None:  # one MAC per entry (wire/admission.py)
                verdict = admission.admit(fields, reply_to)
                if verdict.grant is None:
                    self.stats.count_rejected(f"commands.{verdict.code}")
                    self.dead_letters.set_aside(f"commands.{verdict.code}", entry_id, verdict.reason, fields[b"c"])
                    per_entry.append((entry_id, reply_to, [(wire.RESULT_REFUSED, 0, 0, verdict.reason)]))
                    continue
                grant = verdict.grant
            for data in encoded:
                try:
                    command = decode_command(data)
                except Exception as error:  # CodecError, and whatever a hostile blob raises
                    results.append((wire.RESULT_MALFORMED, 0, 0, f"{type(error).__name__}: {error}"))
                    continue
                refusal = grant.refusal(command) if grant is not None else None
                if refusal is not None:
                    results.append((wire.RESULT_REFUSED, 0, 0, refusal))
                    continue
                command.timestamp = now
                start = engine.position + 1
                try:
                    events = engine.process(command)
                except Exception as error:
                    # An engine bug this command triggers: the state may be half-changed,
                    # so the node rebuilds from its archive; the entry is set aside so
                    # that no leader runs it again (it would fail the same way).
                    raise PoisonCommand(
                        entry_id, reply_to, f"{type(error).__name__}: {error}", data, len(encoded)
                    ) from error
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
            self.stats.appends += 1
            self._publish(entries)
        payload_at = {entry.position: entry.payload for entry in entries}
        payload_at.update(self._original_payloads(batches))
        self._hand_over(
            PendingBatch(
                last_position=batches[-1].last_position,
                replies=[reply for batch in batches for reply in self._replies(batch, payload_at)],
                stream_ids=[entry_id for batch in batches for entry_id in batch.stream_ids],
                archived_at=time.monotonic(),
            )
        )

    def _replies(self, batch: OutBatch, payload_at: dict[int, bytes]) -> list[tuple[str, bytes]]:
        replies = []
        for entry_id, reply_to, results in batch.per_entry:
            out = []
            for status, start, count, detail in results:
                if status in (wire.RESULT_MALFORMED, wire.RESULT_REFUSED):
                    out.append([status, 0, [], detail])
                elif detail is not None:  # a duplicate: answer with the original result
                    first = detail.original_position
                    payloads = [payload_at[p] for p in range(first, first + detail.original_count) if p in payload_at]
                    out.append([wire.RESULT_DUPLICATE, detail.original_position, payloads, ""])
                else:
                    out.append([status, start, [payload_at[p] for p in range(start, start + count)], ""])
            replies.append((reply_to, wire.encode([entry_id.decode(), out])))
        return replies

    def write_quorum(self) -> int:
        """The W to commit with now, from the latest heartbeat answer; remembered, since
        the settle report must cover every W this leader may still use."""
        write_quorum = self.node.view.write_quorum
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

    def _hand_over(self, batch: PendingBatch) -> None:
        write_quorum = self.write_quorum()
        with self.lock:
            self.tracker.leader_position = batch.last_position
            self.pending.append(batch)
            committed = self.tracker.commit_position(write_quorum) >= batch.last_position
        if committed:
            # The acks arrived before we got here (or R = 0): deliver now; otherwise
            # the commit thread does when the acks come in.
            self._deliver(write_quorum, self.archive_line)

    def _publish(self, entries: list) -> None:
        """Publish with the fence. A missing fence (Redis lost it) holds the batch, and
        everything behind it, until the control plane restores the fence; a fence at
        another term means a newer leader exists: step down."""
        while True:
            keys = self.node.view.replication_keys
            try:
                self.publisher.publish(self.term, entries, keys.signing_key if keys is not None else None)
                self.note = ""
                return
            except FencedError as error:
                if error.current_fence is not None and error.current_fence > self.term:
                    raise SteppedDown(f"publish refused: {error}") from error
                what = "missing in Redis" if error.current_fence is None else f"still at term {error.current_fence}"
                self.note = (
                    f"leader of term {self.term}: the fence is {what}; holding "
                    f"{len(entries)} archived events until the control plane raises it"
                )
                if self.stopping.wait(0.05) or self.closing.is_set():
                    raise SteppedDown("stopped while the fence was not at our term") from error

    def _original_payloads(self, batches: list[OutBatch]) -> dict[int, bytes]:
        """The original events of every duplicate in these batches, by position, in one
        archive read per run of nearby ranges. A leader that takes over a failed leader's
        backlog answers thousands of duplicates at once: one read (one connection) each
        took seconds at 10,000 commands/s, long enough for the supervisor to see no
        progress and fail it over again, and again (found by bench/soak.py)."""
        ranges = sorted(
            (detail.original_position, detail.original_position + detail.original_count - 1)
            for batch in batches
            for _entry_id, _reply_to, results in batch.per_entry
            for _status, _start, _count, detail in results
            if isinstance(detail, CommandDuplicate)
        )
        runs: list[list[int]] = []
        for low, high in ranges:
            if runs and low <= runs[-1][1] + DUPLICATE_READ_GAP:
                runs[-1][1] = max(runs[-1][1], high)
            else:
                runs.append([low, high])
        return {
            entry.position: entry.payload
            for low, high in runs
            for batch in self.node.state.log.read(low, high)
            for entry in batch
        }

    # -- the commit thread -------------------------------------------------------------

    def _commit_loop(self) -> None:
        cursor = wire.StreamCursor(b"$")
        try:
            recent = self.redis.xrevrange(self.acks_key, count=200)
        except redis_lib.RedisError:
            recent = []
        if recent:
            # Poison among these was set aside when it was first read: not again.
            self._record_acks(list(reversed(recent)), time.monotonic(), set_aside=False)
            cursor.advance(recent[0][0])
        line = self.commit_line
        while not self.stopping.is_set():
            try:
                write_quorum = self.write_quorum()
                if write_quorum > 0:
                    # Deliver what the acks read last time committed, and read the next
                    # acks, in one round trip.
                    read = ("XREAD", "COUNT", 1000, "BLOCK", 20, "STREAMS", self.acks_key, cursor.last_id)
                    rows = stream_entries(self._deliver(write_quorum, line, then=read)[0])
                    if rows:
                        self._record_acks(rows, time.monotonic())
                        cursor.advance(rows[-1][0])
                    elif cursor.check_reset(self.redis, self.acks_key):
                        log.warning("the ack stream started over (Redis restarted?): reading it from the start")
                else:
                    # W = 0: the archive thread delivers each batch itself; this only
                    # keeps the commit hash fresh.
                    self.stopping.wait(0.05)
                    self._deliver(write_quorum, line)
            except redis_lib.RedisError as error:
                log.warning("commit thread: Redis error %s; retrying", error)
                time.sleep(0.1)
            except Exception:
                log.exception("commit thread failed; retrying")
                time.sleep(0.1)

    def _record_acks(self, rows: list, now: float, set_aside: bool = True) -> None:
        keys = self.node.view.replication_keys
        acks = []
        for entry_id, fields in rows:
            try:
                ack = (fields[b"n"].decode(), int(fields[b"p"]), int(fields[b"t"]), fields.get(b"a", b"").decode())
            except (KeyError, ValueError, UnicodeDecodeError, AttributeError) as error:
                if set_aside:
                    self.stats.count_rejected("acks")
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
                        self.stats.count_rejected(f"acks.{refusal[0]}")
                        self.dead_letters.set_aside(f"acks.{refusal[0]}", entry_id, refusal[1], fields)
                    continue
            acks.append(ack)
        with self.lock:
            self.tracker.set_members(self.node.view.members)
            for node, position, term, archive_id in acks:
                if self.tracker.record_ack(node, position, term, archive_id):
                    self._seen[node] = now

    def _deliver(self, write_quorum: int, line: DirectConnection, then: tuple | None = None) -> list:
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
            now = time.monotonic()
            window = self.node.view.failover_timeout
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
                        "leader": self.node.config.name,
                        "commit_position": committed,
                        "leader_position": leader_position,
                        "write_quorum": write_quorum,
                        "live_followers": ",".join(live),
                        "updated_ns": time.time_ns(),
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
        return self.fenced.deliver_command(
            line,
            self.term,
            replies,
            commands_key=self.commands_key,
            group=wire.LEADER_GROUP,
            command_ids=stream_ids,
            reply_ttl=REPLY_TTL_S,
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
                    if self.failure is None:
                        self.failure = SteppedDown(
                            f"delivery refused: the fence is at term {fence}, past our term {self.term}"
                        )
                elif time.monotonic() - self._fence_warned > 1.0:
                    self._fence_warned = time.monotonic()
                    log.warning(
                        "term %d: the fence is %s; holding results until the control plane restores it",
                        self.term, status,
                    )  # fmt: skip
                return
        before = self.commit_position
        self.commit_position = max(before, delivery.commit)
        observe = self.node.on_commit  # the node's metrics, if served
        if observe is not None and delivery.ready:
            now = time.monotonic()
            observe([now - batch.archived_at for batch in delivery.ready], self.commit_position - before)
