"""The leader's loop: commands in, processed, handed to the archiver; results out on commit.

Pipeline (DESIGN §2), three threads, each in a module of its own: the loop thread (here)
reads a batch of commands from the command stream, stamps time and runs handle+apply;
the archive thread (nodes/archiver.py) appends what it processed to the archive and
publishes it with the fence while the loop goes on with the next batch; the commit
thread (nodes/committer.py) collects the followers' acknowledgements and delivers the
results once they are committed (nodes.protocol.commit). A result is never sent before
its commit. The threads share one stop event and report failures to the loop through
one `Trouble`.
"""

from __future__ import annotations

import logging
import threading

import redis as redis_lib

import wire
from archive import DeadLetters
from nodes.archiver import Archiver, OutBatch
from nodes.committer import REPLY_TTL_S, Committer, Trouble
from nodes.context import RoleContext
from nodes.engine import CommandDuplicate, decode_command, encode_events
from wire.admission import Admission
from wire.keys import keys
from wire.nonces import parse_stored
from wire.redisconn import stream_entries

log = logging.getLogger(__name__)

OLD_STREAM_TTL_S = 600


class CyclePacer:
    """Spaces the leader's cycles under load (natural batching with a floor).

    Each cycle costs every process of the cluster about the same whatever it carries: the
    leader's archive commit, a publish, each follower's read, commit and ack, a delivery,
    each a wake-up and a round trip. Left alone, at 10,000 commands/s a cycle would start
    for every client batch as it arrives (about 750 a second of 13 commands each), and
    those fixed costs kept both cores busy; the queueing for CPU that followed set the
    latency tail (bench/cluster.py). So while commands keep coming (the last cycle began
    less than twice `min_cycle_s` after the one before it), the next read waits until
    `min_cycle_s` after the last cycle began; what arrived meanwhile goes in one cycle.

    It never holds back a command that finds the leader idle, sparse traffic (cycles
    further apart than that: waiting would batch nothing and only add latency), nor a
    backlog (after a read that took all it was allowed, the next one goes at once).
    """

    def __init__(self, min_cycle_s: float, clock) -> None:
        self.min_cycle_s = min_cycle_s
        self.clock = clock
        self._next_at = 0.0  # monotonic: no read before this
        self._last_began: float | None = None

    def delay(self) -> float:
        """Seconds to wait before the next read."""
        return max(0.0, self._next_at - self.clock.monotonic())

    def began(self, full: bool) -> None:
        """A cycle took commands; `full`: as many entries as the read asked for."""
        now = self.clock.monotonic()
        flowing = self._last_began is not None and now - self._last_began < 2 * self.min_cycle_s
        self._last_began = now
        self._next_at = now + self.min_cycle_s if flowing and not full else 0.0


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


class Leader:
    """Leads one term. Created when the node becomes leader, discarded when it stops."""

    def __init__(self, ctx: RoleContext, term: int) -> None:
        self.ctx = ctx
        self.term = term
        self.cluster = ctx.view.cluster
        self.redis = ctx.redis
        self.commands_key = wire.commands_key(self.cluster)
        # Each thread has a Redis connection of its own, without redis-py's per-call cost
        # (wire.redisconn): the loop reads commands, the archive thread publishes, the
        # commit thread reads acks and delivers in one round trip.
        self.read_line = ctx.adapters.line(ctx.redis, ctx.stats)
        self._policy: dict | None = None  # the trading policy the admission was built from
        self.admission: Admission | None = None
        # The nonce marks earlier leaders acknowledged (wire.nonces), read in `start`.
        self.marks: dict[str, int] = {}
        self.dead_letters = ctx.adapters.dead_letters(ctx.redis, self.cluster, ctx.name)
        self.claimed: list = []
        self._commands_per_entry = 1.0  # in the command stream's entries, smoothed
        self.pacer = CyclePacer(ctx.config.min_cycle_s, ctx.clock)
        self.stopping = threading.Event()  # the loop's, the archiver's and the committer's
        self.trouble = Trouble()
        self.committer = Committer(ctx, term, self.trouble, self.stopping)
        self.archiver = Archiver(ctx, term, self.committer, self.trouble, self.stopping)

    @property
    def commit_position(self) -> int:
        return self.committer.commit_position

    def settled_quorum(self, held: int) -> int | None:
        return self.committer.settled_quorum(held)

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        # Older terms' live streams are only read by followers still catching up.
        for key in self.redis.scan_iter(match=f"{wire.events_key(self.cluster, 0)[:-1]}*"):
            if key.decode() != self.archiver.stream_key:
                self.redis.expire(key, OLD_STREAM_TTL_S)
        try:
            self.redis.xgroup_create(self.commands_key, wire.LEADER_GROUP, id="0", mkstream=True)
        except redis_lib.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        # Read after our election, so after the fence moved: no earlier leader acknowledges
        # (and raises a mark) any more.
        self.marks = parse_stored(self.redis.hgetall(keys(self.cluster).nonces))
        # Commands an earlier leader read but never acknowledged are taken over first;
        # the engine answers those it already executed as duplicates (idempotency).
        start_id = "0-0"
        while True:
            start_id, claimed, *_ = self.redis.xautoclaim(
                self.commands_key, wire.LEADER_GROUP, self.ctx.name, 0, start_id, count=1000
            )
            self.claimed.extend(entry for entry in claimed if entry[1])
            if start_id in (b"0-0", "0-0"):
                break
        self.archiver.start()
        self.committer.start(until=self.archiver.thread)

    def stop(self) -> None:
        """Archive and publish the batches already processed (the committer delivers what
        commits meanwhile), then both threads end."""
        self.stopping.set()
        self.archiver.join(timeout=30)
        self.committer.join(timeout=5)
        self.read_line.close()

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every processed batch is archived (before a snapshot)."""
        deadline = self.ctx.clock.monotonic() + timeout
        while self.archiver.busy() and self.ctx.clock.monotonic() < deadline:
            self.trouble.check()
            self.stopping.wait(0.005)

    # -- the loop thread ---------------------------------------------------------------

    def cycle(self) -> str:
        """Process one batch of commands; returns what happened, as a sentence."""
        self.trouble.check()
        if self.trouble.note:
            self.stopping.wait(0.05)
            return self.trouble.note
        if self.claimed:
            size = self.ctx.config.batch_size
            entries, self.claimed = self.claimed[:size], self.claimed[size:]
        else:
            delay = self.pacer.delay()
            if delay > 0:
                self.stopping.wait(delay)
            # A new command wakes the read at once; delivery is the commit thread's job,
            # so there is no reason to poll faster than that.
            asked = self._entries_per_read()
            read = (
                "XREADGROUP", "GROUP", wire.LEADER_GROUP, self.ctx.name,
                "COUNT", asked, "BLOCK", 100,
                "STREAMS", self.commands_key, ">",
            )  # fmt: skip
            entries = stream_entries(self.read_line.call(*read))
            if entries:
                self.pacer.began(full=len(entries) >= asked)
        if not entries:
            return f"leader of term {self.term}: idle at position {self.ctx.state.position}"
        count = self._process(entries)
        # Commands per entry, smoothed: each read takes about batch_size commands, however
        # the clients batch (one huge cycle makes every result behind it wait for it).
        self._commands_per_entry += 0.2 * (max(1, count) / len(entries) - self._commands_per_entry)
        self.ctx.stats.cycles += 1
        self.ctx.stats.items += count
        self.ctx.after_batch()
        return (
            f"leader of term {self.term}: {count} commands to position {self.ctx.state.position}, "
            f"committed up to {self.commit_position}"
        )

    def _admission(self) -> Admission | None:
        """The trading checks of the latest heartbeat answer (None: not enforced)."""
        policy = self.ctx.view.trading
        if policy is not self._policy:
            self._policy = policy
            self.admission = Admission.from_policy(self.cluster, policy, self.admission, self.marks)
        return self.admission

    def _entries_per_read(self) -> int:
        return max(1, min(1000, round(self.ctx.config.batch_size / self._commands_per_entry)))

    def _process(self, entries: list) -> int:
        """handle+apply every command of the batch; the archive thread takes it from here."""
        admission = self._admission()
        state = self.ctx.state
        engine = state.engine
        now = self.ctx.clock.time_ns()
        first_position = engine.position + 1
        engine.fold_hash()  # the running hash covers all before this batch (see below)
        events_all: list = []
        per_entry: list[tuple[bytes, str, list]] = []
        nonces: dict[str, int] = {}  # of the admitted batches: marked when acknowledged
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
                    self.ctx.stats.count_rejected(f"commands.{verdict.code}")
                    self.dead_letters.set_aside(f"commands.{verdict.code}", entry_id, verdict.reason, fields[b"c"])
                    per_entry.append((entry_id, reply_to, [(wire.RESULT_REFUSED, 0, 0, verdict.reason)]))
                    continue
                grant = verdict.grant
                nonces[verdict.key_id] = verdict.nonce  # admission takes a key's nonces in rising order
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
            if grant is not None and results and all(isinstance(result[3], CommandDuplicate) for result in results):
                # Taken, yet the book does not change: a client's resend, a batch taken over
                # from a failed leader, or one replayed in the window wire.nonces describes.
                # Counted, so that the last shows.
                self.ctx.stats.count_rejected("commands.all_duplicates")
            per_entry.append((entry_id, reply_to, results))
        # Encoded once: the archive's records, and the running hash folds them as they are.
        payloads = encode_events(events_all)
        engine.fold_hash_from(payloads)
        batch = OutBatch(
            entries=state.entries_for(events_all, self.term, now, first_position, payloads),
            per_entry=per_entry,
            stream_ids=[entry_id for entry_id, _ in entries],
            last_position=engine.position,
            nonces=nonces,
        )
        self.archiver.put(batch)  # blocks while the archiver is a batch behind
        return commands
