"""A node's replicated state on disk and in memory: archive + engine, rebuilt at start-up."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Callable, Iterator, Sequence
from itertools import count, repeat

from archive import LogEntry
from nodes.adapters import Adapters
from nodes.engine import Engine, SnapshotVersionError, encode_events, event_kind

log = logging.getLogger(__name__)

_new_tuple = tuple.__new__


class DivergenceError(RuntimeError):
    """The state rebuilt from a snapshot does not match the digest stored with it."""


class ArchiveNeedsSnapshot(DivergenceError):
    """The archive's log starts after a position no snapshot of it covers."""


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No garbage collection while a state is rebuilt: a snapshot restore and a replay only
    add live objects (the book), so every full collection on the way scans a growing heap
    for nothing. A restarted follower with a large book spent 1.5 s of its start-up in six
    such collections (one of 420 ms). The caller collects once afterwards if it wants to."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class NodeState:
    """The engine and the node's own archive, kept in step: engine.position == log tail.

    Only the node's loop thread changes it; other threads (heartbeats, metrics) read
    ``tail`` only, a tuple swapped in whole. The archive at `location` is opened (created
    if missing) through `adapters`; without them (a benchmark, a test), the PostgreSQL ones.
    """

    def __init__(self, location: str, adapters: Adapters | None = None) -> None:
        self.location = location
        self.log, self.snapshots = (adapters or Adapters()).open_archive(location)
        self.engine = Engine()
        self.archive_id = self.log.archive_id()
        self.truncations = self.log.truncations()  # rejoin truncations: reported with the tail
        self.boot = self.log.count_boot()  # orders this process's reports after its predecessors'
        # The log's tail (position, term), swapped in whole: the heartbeat thread reads
        # both from one moment, never a position from one batch and a term from another.
        self.tail: tuple[int, int] = (0, 0)
        self.last_snapshot_position = 0

    @property
    def archived(self) -> int:
        """The log's tail position, readable from any thread."""
        return self.tail[0]

    def recover(self, progress: Callable[[int, int], None] | None = None) -> str:
        """Snapshot + replay of the archive into a fresh engine; returns a status sentence."""
        with collector_paused():
            return self._recover(progress)

    def _recover(self, progress: Callable[[int, int], None] | None) -> str:
        tail, tail_term = self.log.refresh_tail()
        snapshot = self.snapshots.latest(at_or_below=tail)
        if snapshot is None:
            engine = Engine()
        else:
            # restore() checks the state against the digest inside the snapshot, so the
            # digest stored beside it need only match that one (no second full digest).
            carried = Engine.snapshot_digest(snapshot.data)
            if carried != snapshot.digest:
                raise DivergenceError(
                    f"snapshot at position {snapshot.position} carries digest {carried[:16]}, "
                    f"but was stored with {snapshot.digest[:16]}"
                )
            try:
                engine = Engine.restore(snapshot.data)
            except SnapshotVersionError as exc:
                # a snapshot of an older format (its running hash cannot be carried on):
                # replay the log from its start instead; if retention has cut the log,
                # the replay below refuses with ArchiveNeedsSnapshot (an install follows)
                log.warning("snapshot at position %s not used: %s", snapshot.position, exc)
                snapshot, engine = None, Engine()
        self.last_snapshot_position = engine.position
        start = engine.position + 1
        replayed = 0
        for batch in self.log.read(start):
            if replayed == 0 and batch[0].position != start:
                # Retention or an install started the log later, and no snapshot covers
                # the positions before it: this archive cannot rebuild the state.
                raise ArchiveNeedsSnapshot(
                    f"the archive starts at position {batch[0].position}, but its latest usable snapshot "
                    f"is at {start - 1}: it cannot be replayed"
                )
            engine.apply_records([entry.payload for entry in batch])
            replayed += len(batch)
            if progress:
                progress(engine.position, tail)
        if engine.position != tail:
            raise DivergenceError(f"replay stopped at {engine.position}, archive tail is {tail}")
        self.engine = engine
        self.tail = (tail, tail_term)
        return (
            f"recovered to position {engine.position} "
            f"(snapshot at {snapshot.position if snapshot else 0}, replayed {replayed} events)"
        )

    def append(self, entries: Sequence[LogEntry]) -> None:
        """Archive a batch (one durable transaction)."""
        self.log.append(entries)
        self.tail = (entries[-1].position, entries[-1].term)

    @property
    def position(self) -> int:
        return self.engine.position

    def entries_for(
        self, events: Sequence, term: int, timestamp: int, first: int, payloads: Sequence[bytes] | None = None
    ) -> list[LogEntry]:
        """Log entries for events just applied by the leader, positions from `first`;
        `payloads`, their records if the caller encoded them already."""
        if payloads is None:
            payloads = encode_events(events)
        elif len(payloads) != len(events):
            raise ValueError(f"{len(payloads)} payloads for {len(events)} events")
        # Built in C (tuple.__new__ over zipped columns): half the cost of a comprehension
        # calling LogEntry(...) per event, which was a tenth of the leader's loop flat out.
        columns = zip(count(first), repeat(term), map(event_kind, events), repeat(timestamp), payloads)
        return list(map(_new_tuple, repeat(LogEntry), columns))

    def take_snapshot(self, term: int) -> str:
        engine = self.engine
        data = engine.snapshot()  # serialises the state once; its digest comes with it
        digest = Engine.snapshot_digest(data)
        self.snapshots.save(engine.position, term, digest, data)
        self.last_snapshot_position = engine.position
        self.snapshots.prune(keep=3)
        return f"snapshot taken at position {engine.position} (digest {digest[:16]})"

    def renew_archive(self) -> str:
        """Empty the archive under a new id (before installing a snapshot); the engine is
        rebuilt from what the archive holds once the install is done."""
        self.archive_id = self.log.renew()
        self.truncations = 0
        self.tail = (0, 0)
        self.last_snapshot_position = 0
        return self.archive_id

    def start_log_at(self, entries: Sequence[LogEntry]) -> None:
        """Begin the (empty) log at an installed snapshot's position."""
        self.log.start_at(entries)
        self.tail = (entries[-1].position, entries[-1].term)

    def truncate_after(self, position: int) -> int:
        dropped = self.log.truncate_after(position)
        self.truncations = self.log.truncations()
        self.tail = self.log.refresh_tail()
        return dropped

    def close(self) -> None:
        self.log.close()
        self.snapshots.close()
