"""The leader's archive thread: append what the loop processed, publish it, hand it to the committer.

Whatever the loop thread processed while the last append was on its way to disk goes to
disk together, in one transaction and one entry (group commit); then it is published on
the term's live stream with the fence, and handed to the committer with the replies it
will deliver on commit.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field

import wire
from archive import FencedError
from nodes.committer import Committer, PendingBatch, SteppedDown, Trouble
from nodes.context import RoleContext
from nodes.engine import CommandDuplicate
from wire.nonces import raise_marks

log = logging.getLogger("nodes.leader")

OUTBOX_SIZE = 1
DUPLICATE_READ_GAP = 10_000  # duplicates' ranges this close are read in one archive read


@dataclass
class OutBatch:
    """Processed by the loop thread, to be archived and published by the archive thread."""

    entries: list
    per_entry: list  # (stream entry id, reply key, [(status, first, count, duplicate)])
    stream_ids: list[bytes]
    last_position: int
    nonces: dict[str, int] = field(default_factory=dict)  # key id -> highest nonce admitted


class Archiver:
    """The archive thread of one term. `put` hands it a batch; once `stop` is set it
    archives what is left in its outbox and ends."""

    def __init__(
        self, ctx: RoleContext, term: int, committer: Committer, trouble: Trouble, stop: threading.Event
    ) -> None:
        self.ctx, self.term, self.committer, self.trouble, self.stop = ctx, term, committer, trouble, stop
        self.line = ctx.adapters.line(ctx.redis, ctx.stats)  # this thread's publishes and deliveries
        self.stream_key = wire.events_key(ctx.view.cluster, term)  # the term's live stream
        self.publisher = ctx.adapters.publisher(
            ctx.redis,
            ctx.view.cluster,
            stream_key=self.stream_key,
            maxlen=ctx.config.stream_maxlen,
            window_s=ctx.config.stream_window_s,
            line=self.line,
        )
        # Batches processed by the loop thread, waiting for this thread: the loop goes on
        # with the next batch while the last one is committed to disk.
        self.outbox: queue.Queue[OutBatch] = queue.Queue(maxsize=OUTBOX_SIZE)
        self.thread = threading.Thread(target=self._run, name=f"archive-{ctx.name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout: float) -> None:
        if self.thread.is_alive():
            self.thread.join(timeout)
        self.line.close()  # the next use (a thread that did not stop in time) connects again

    def put(self, batch: OutBatch) -> None:
        """From the loop thread; it runs at most OUTBOX_SIZE batches ahead."""
        while True:
            self.trouble.check()
            try:
                self.outbox.put(batch, timeout=0.1)
                return
            except queue.Full:
                continue

    def busy(self) -> bool:
        """Batches processed and not archived yet."""
        return bool(self.outbox.unfinished_tasks) or not self.outbox.empty()

    def _run(self) -> None:
        while True:
            try:
                batches = [self.outbox.get(timeout=0.1)]
            except queue.Empty:
                if self.stop.is_set():
                    return
                continue
            while True:
                try:
                    batches.append(self.outbox.get_nowait())
                except queue.Empty:
                    break
            try:
                self._archive(batches)
            except Exception as error:  # the loop thread re-raises it and the node recovers
                self.trouble.fail(error)
                log.warning("archive thread stopped: %s: %s", type(error).__name__, error)
                return
            finally:
                for _ in batches:
                    self.outbox.task_done()

    def _archive(self, batches: list[OutBatch]) -> None:
        state = self.ctx.state
        entries = [entry for batch in batches for entry in batch.entries]
        if entries:
            state.append(entries)
            self.ctx.stats.appends += 1
            self._publish(entries)
        originals = self._original_payloads(batches)  # of the duplicates, read back
        nonces: dict[str, int] = {}
        for batch in batches:
            raise_marks(nonces, batch.nonces)
        self.committer.hand_over(
            PendingBatch(
                last_position=batches[-1].last_position,
                replies=[reply for batch in batches for reply in self._replies(batch, originals)],
                stream_ids=[entry_id for batch in batches for entry_id in batch.stream_ids],
                archived_at=self.ctx.clock.monotonic(),
                nonces=nonces,
            ),
            self.line,
        )

    def _replies(self, batch: OutBatch, originals: dict[int, bytes]) -> list[tuple[str, bytes]]:
        """Each entry's reply message: its results, with their events' records (a slice of
        the batch's entries) or, for a duplicate, the original's (`originals`)."""
        replies = []
        entries = batch.entries
        base = entries[0].position if entries else 0
        for entry_id, reply_to, results in batch.per_entry:
            out = []
            for status, start, count, detail in results:
                if status in (wire.RESULT_MALFORMED, wire.RESULT_REFUSED):
                    out.append([status, 0, [], detail])
                elif detail is not None:  # a duplicate: answer with the original result
                    first = detail.original_position
                    found = [originals[p] for p in range(first, first + detail.original_count) if p in originals]
                    out.append([wire.RESULT_DUPLICATE, detail.original_position, found, ""])
                else:
                    out.append([status, start, [e.payload for e in entries[start - base : start - base + count]], ""])
            replies.append((reply_to, wire.encode([entry_id.decode(), out])))
        return replies

    def _publish(self, entries: list) -> None:
        """Publish with the fence. A missing fence (Redis lost it) holds the batch, and
        everything behind it, until the control plane restores the fence; a fence at
        another term means a newer leader exists: step down."""
        while True:
            keys = self.ctx.view.replication_keys
            try:
                self.publisher.publish(self.term, entries, keys.signing_key if keys is not None else None)
                self.trouble.note = ""
                return
            except FencedError as error:
                if error.current_fence is not None and error.current_fence > self.term:
                    raise SteppedDown(f"publish refused: {error}") from error
                what = "missing in Redis" if error.current_fence is None else f"still at term {error.current_fence}"
                self.trouble.note = (
                    f"leader of term {self.term}: the fence is {what}; holding "
                    f"{len(entries)} archived events until the control plane raises it"
                )
                if self.stop.wait(0.05):
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
            for batch in self.ctx.state.log.read(low, high)
            for entry in batch
        }
