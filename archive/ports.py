"""The archive's ports: the Protocols its adapters implement (PostgreSQL, Redis).

Each port has a contract suite (tests/archive/contracts/) that every adapter runs. The
node's code is written against these methods; it gets its adapters from one factory
(nodes/adapters.py), made where the node is put together (the worker bootstep).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from archive.entries import LogEntry, LogSize, Snapshot, SnapshotInfo


class EventLog(Protocol):
    """A node's durable, append-only event log.

    Ordering: positions are 1-based and gap-free; terms never decrease along the log.
    Writers: the node is the only writer of its archive. The adapter still serialises
    writers of one log on the database, so a second writer (an operator's truncation in
    another process) can never produce a gap; it is at worst noticed on the next append.
    Durability: when append() returns, the batch is on disk (synchronous commit).
    Failure: a refused batch (LogGapError, TermRegressionError, CorruptEntryError) writes
    nothing and leaves the log as it was. Any other failure (ArchiveUnavailableError)
    means the outcome is unknown: the whole batch or none of it is in the log, never a
    part; call tail() to find out which.
    """

    def append(self, entries: Sequence[LogEntry]) -> None:
        """Append a batch atomically. It must start at tail + 1, be contiguous, keep terms
        from decreasing (starting at or above the tail's term) and carry non-empty bytes
        payloads (other bytes-like objects are stored as bytes) and 64-bit int fields.
        Not idempotent: appending the same batch twice is a LogGapError."""
        ...

    def tail(self) -> tuple[int, int]:
        """(position, term) of the last entry, (0, 0) if the log is empty. Served from an
        in-process cache kept up to date by this object's writes; a truncation made by
        another process is noticed (and the cache corrected) on the next append."""
        ...

    def refresh_tail(self) -> tuple[int, int]:
        """Like tail(), but read from the database (forgets the cached tail)."""
        ...

    def read(
        self, start: int, end: int | None = None, batch_size: int = 5000
    ) -> Iterator[list[LogEntry]]:
        """Entries with start <= position <= end (to the tail if end is None), in order,
        in lists of at most batch_size. Streams from the database: memory stays bounded.
        A consistent snapshot of the log as of the first batch; safe while appending."""
        ...

    def term_at(self, position: int) -> int | None:
        """The term of the entry at position, None if the log doesn't hold it."""
        ...

    def truncate_after(self, position: int) -> int:
        """Delete every entry after position; return how many. Idempotent."""
        ...

    def delete_before(self, position: int, keep_from_bound: int) -> int:
        """Retention: delete entries below position; return how many. Refuses (RetentionError,
        nothing deleted) if position is above the latest snapshot's position (replay from it
        needs those entries) or above keep_from_bound, the lowest position any follower
        still needs. With no snapshot, nothing can be deleted."""
        ...

    def reclaim(self) -> None:
        """Make the space of deleted entries reusable by new appends (retention calls it
        after deleting), so an archive trimmed for months stays the size of what it keeps."""
        ...

    def size(self) -> LogSize:
        """The positions the log holds (first..last: retention moves first up) and the
        archive's bytes on disk (events and snapshots)."""
        ...

    def start_at(self, entries: Sequence[LogEntry]) -> None:
        """Begin an empty log at entries[0].position instead of 1: the entry at a snapshot's
        position and those after it, when a node installs that snapshot (the snapshot holds
        the state of every entry before). Like append() otherwise. LogGapError (nothing
        written) if the log is not empty."""
        ...

    def renew(self) -> str:
        """Make this a new, empty archive: delete every entry and snapshot and give it a new
        archive id (returned), in one transaction. What a node does before installing a
        snapshot: it no longer holds what it acknowledged before (DESIGN §4 "Archive
        identity"), and says so by its new id."""
        ...

    def archive_id(self) -> str:
        """The archive's identity (DESIGN §4 "Archive identity"): fixed from creation,
        a new one after each renew()."""
        ...

    def truncations(self) -> int:
        """How many times truncate_after() dropped entries from this archive."""
        ...

    def count_boot(self) -> int:
        """Count one more process opening this archive; returns its number, higher than
        any returned before (it orders a node's reports across its restarts)."""
        ...

    def close(self) -> None:
        """Release the database connection. Idempotent."""
        ...


class SnapshotStore(Protocol):
    """The engine's snapshots, kept beside the event log of the same archive.

    A snapshot at position P is the state after applying entries 1..P; restoring it and
    replaying P+1.. gives the same state as replaying everything.
    """

    def save(self, position: int, term: int, digest: str, data: bytes) -> None:
        """Store a snapshot, durably. Idempotent: saving the same (position, term, digest)
        again is a no-op; another digest or term at that position is SnapshotConflictError
        (two nodes' states diverged, which determinism forbids)."""
        ...

    def latest(self, at_or_below: int | None = None) -> Snapshot | None:
        """The snapshot with the highest position (at or below the bound), or None."""
        ...

    def list(self) -> list[SnapshotInfo]:
        """All snapshots without their data, newest (highest position) first."""
        ...

    def prune(self, keep: int) -> int:
        """Delete all but the `keep` newest snapshots (keep >= 1); return how many."""
        ...

    def close(self) -> None:
        """Release the database connection. Idempotent."""
        ...


class EventPublisher(Protocol):
    """Publishes the leader's batches on the cluster's live stream, fenced by term.

    Ordering: a batch is published after it is archived, batches in log order. A reader's
    cursor is a log position (entry ids are derived from positions).
    Fencing: publish() is one atomic server-side step that writes nothing unless the
    cluster's fence holds exactly `term`; a missing fence refuses every publish.
    Failure: FencedError or StaleEntryError mean nothing was written. A connection error
    leaves the outcome unknown; re-publishing the same batch is then refused with
    StaleEntryError if the first attempt landed, so a retry never duplicates.
    """

    def publish(self, term: int, entries: Sequence[LogEntry], key: tuple[str, bytes] | None = None) -> None:
        """Publish one contiguous batch of `term` in one round trip; signed with `key`
        (key id, secret) when given, so that readers holding the key can check it."""
        ...


class EventReader(Protocol):
    """Reads a stream of published batches from a log position, without skipping any.

    A missing or empty stream reads as "nothing new": if the stream was lost while the
    reader was behind, the reader cannot tell; the caller compares its position with the
    leader's reported position (first_last_positions() helps).
    """

    def read(self, after_position: int, block_ms: int, count: int) -> list[LogEntry]:
        """Entries with position > after_position, in order and contiguous from
        after_position + 1; [] after block_ms without news. Raises TrimmedError when
        after_position + 1 is no longer on the stream. count bounds the stream entries
        fetched (one entry carries one published batch)."""
        ...

    def first_last_positions(self) -> tuple[int, int] | None:
        """(first, last) log positions the stream holds, None if it is empty or missing."""
        ...
