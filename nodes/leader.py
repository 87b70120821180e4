"""The leader's loop: commands in, events archived and published, results out on commit.

Pipeline (DESIGN §2): the loop thread reads a batch of commands from the command
stream, stamps time, runs handle+apply, appends the events to its archive (one
transaction) and publishes them with the fence. The batch then waits in `pending`
while the loop goes on with the next one. The commit thread collects the followers'
acknowledgements and, once the leader and R followers hold a position, delivers the
results of every command up to it and acknowledges them in the command stream. A
result is never sent before its commit.
"""

from __future__ import annotations

import logging
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


class SteppedDown(Exception):
    """The leader found it may not lead any more (fenced, or a newer term exists)."""


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
        self.wakeup = threading.Event()
        self.stopping = threading.Event()
        self.commit_position = 0
        self.committer = threading.Thread(
            target=self._commit_loop, name=f"commit-{node.config.name}", daemon=True
        )
        self.claimed: list = []
        # Archived but refused by a missing fence (Redis lost it): published first, once
        # the control plane has restored the fence. Our state already includes them.
        self.unpublished: list = []
        self.unpublished_replies: PendingBatch | None = None

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
        self.committer.start()

    def stop(self) -> None:
        self.stopping.set()
        self.wakeup.set()
        if self.committer.is_alive():
            self.committer.join(timeout=5)

    # -- the loop thread ---------------------------------------------------------------

    def cycle(self) -> str:
        """Process one batch of commands; returns what happened, as a sentence."""
        if self.unpublished:
            return self._publish_held()
        if self.claimed:
            entries, self.claimed = self.claimed[: self.node.config.batch_size], self.claimed[
                self.node.config.batch_size :
            ]
        else:
            with self.lock:
                waiting = bool(self.pending)
            reply = self.redis.xreadgroup(
                wire.LEADER_GROUP,
                self.node.config.name,
                {self.commands_key: ">"},
                count=max(1, self.node.config.batch_size // 50),
                block=1 if waiting else 100,
            )
            entries = reply[0][1] if reply else []
        if not entries:
            return f"leader of term {self.term}: idle at position {self.node.state.position}"
        count = self._process(entries)
        return (
            f"leader of term {self.term}: {count} commands to position {self.node.state.position}, "
            f"committed up to {self.commit_position}"
        )

    def _process(self, entries: list) -> int:
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
                results.append((wire.RESULT_COMMITTED, start, len(events), events))
            per_entry.append((entry_id, reply_to, results))
        entries_out = state.entries_for(events_all, self.term, now, first_position)
        published = True
        if entries_out:
            state.append(entries_out)
            published = self._publish(entries_out)
        payload_at = {entry.position: entry.payload for entry in entries_out}
        replies = []
        for entry_id, reply_to, results in per_entry:
            out = []
            for status, start, count, detail in results:
                if status == wire.RESULT_MALFORMED:
                    out.append([status, 0, [], detail])
                    continue
                payloads = [payload_at[p] for p in range(start, start + count)]
                if count == 1 and isinstance(detail[0], CommandDuplicate):
                    original = detail[0]
                    payloads = self._original_result(original)
                    status, start = wire.RESULT_DUPLICATE, original.original_position
                out.append([status, start, payloads, ""])
            replies.append((reply_to, wire.encode([entry_id.decode(), out])))
        batch = PendingBatch(
            last_position=engine.position,
            replies=replies,
            stream_ids=[entry_id for entry_id, _ in entries],
        )
        if published:
            self._hand_over(batch)
        else:
            self.unpublished_replies = batch
        return commands

    def _hand_over(self, batch: PendingBatch) -> None:
        replica_count = self.node.view.replica_count
        with self.lock:
            self.tracker.leader_position = self.node.state.position
            self.pending.append(batch)
            committed = self.tracker.commit_position(replica_count) >= batch.last_position
        if committed:
            # The acks arrived before we got here (or R = 0): deliver now rather than
            # wait for the commit thread's next wake-up.
            self._deliver(replica_count)
        else:
            self.wakeup.set()

    def _publish(self, entries: list) -> bool:
        """Publish with the fence; False (entries held) when the fence is missing."""
        try:
            self.publisher.publish(self.term, entries)
        except FencedError as error:
            if error.current_fence is not None:
                raise SteppedDown(f"publish refused: {error}") from error
            self.unpublished = list(entries)
            return False
        return True

    def _publish_held(self) -> str:
        if not self._publish(self.unpublished):
            time.sleep(0.05)
            return (
                f"leader of term {self.term}: the fence is missing in Redis; holding "
                f"{len(self.unpublished)} archived events until the control plane restores it"
            )
        count = len(self.unpublished)
        self.unpublished = []
        if self.unpublished_replies is not None:
            self._hand_over(self.unpublished_replies)
            self.unpublished_replies = None
        return f"leader of term {self.term}: fence restored, published {count} held events"

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
        now = time.monotonic()
        for entry_id, fields in reversed(recent):
            self._record_ack(fields, now)
            last_id = entry_id
        while not self.stopping.is_set():
            try:
                replica_count = self.node.view.replica_count
                if replica_count > 0:
                    reply = self.redis.xread({self.acks_key: last_id}, count=1000, block=20)
                    now = time.monotonic()
                    for _key, rows in reply or []:
                        for entry_id, fields in rows:
                            self._record_ack(fields, now)
                            last_id = entry_id
                else:
                    self.wakeup.wait(0.05)
                    self.wakeup.clear()
                self._deliver(replica_count)
            except redis_lib.RedisError as error:
                log.warning("commit thread: Redis error %s; retrying", error)
                time.sleep(0.1)
            except Exception:
                log.exception("commit thread failed; retrying")
                time.sleep(0.1)

    def _record_ack(self, fields: dict, now: float) -> None:
        try:
            node = fields[b"n"].decode()
            position = int(fields[b"p"])
            term = int(fields[b"t"])
        except (KeyError, ValueError):
            return
        with self.lock:
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
        if commit > self.commit_position:
            self.commit_position = commit
        with self.redis.pipeline(transaction=False) as pipe:
            for batch in ready:
                for key, message in batch.replies:
                    pipe.rpush(key, message)
                    pipe.expire(key, 300)
                if batch.stream_ids:
                    pipe.xack(self.commands_key, wire.LEADER_GROUP, *batch.stream_ids)
                    pipe.xdel(self.commands_key, *batch.stream_ids)
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

