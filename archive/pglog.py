"""The event log on PostgreSQL: one row per segment (a batch), appended in one round trip."""

from __future__ import annotations

import contextlib
import itertools
import struct
from collections.abc import Iterator, Sequence
from typing import NoReturn

import msgspec
import psycopg
from psycopg import pq

from archive.entries import LogEntry, LogSize
from archive.errors import (
    ArchiveUnavailableError,
    CorruptEntryError,
    LogGapError,
    RetentionError,
    TermRegressionError,
)
from archive.pgbase import PostgresStore
from archive.schema import (
    APPEND_FUNCTION,
    GAP_SQLSTATE,
    META_TABLE,
    SEGMENT_TABLE,
    SNAPSHOT_TABLE,
    TERM_SQLSTATE,
    WRITER_LOCK_KEY,
    count_boot,
    read_archive_id,
    read_truncations,
)
from archive.streamformat import decode_events, encode_events

_APPEND = f"SELECT {APPEND_FUNCTION}(%s, %s, %s, %b)"
# The same, prepared on the bare connection (PostgresEventLog._append_one).
_PREPARED = b"tec_append_segment"
_APPEND_SQL = f"SELECT {APPEND_FUNCTION}($1, $2, $3, $4)".encode()
_APPEND_TYPES = [20, 20, 20, 17]  # int8, int8, int8, bytea
_BINARY = [1, 1, 1, 1]
_INT8 = struct.Struct("!q").pack
_INSERT = f"INSERT INTO {SEGMENT_TABLE} (first_position, last_position, term, events) VALUES (%s, %s, %s, %b)"
_SELECT_TAIL = f"SELECT last_position, term FROM {SEGMENT_TABLE} ORDER BY first_position DESC LIMIT 1"
# The segment holding `position`, if any: the one with the highest first position at or
# below it (the primary key finds it), whose last position reaches it.
_SEGMENT_AT = (
    f"SELECT first_position, last_position, term, events FROM {SEGMENT_TABLE} "
    "WHERE first_position <= %s ORDER BY first_position DESC LIMIT 1"
)
# What psycopg raises while encoding a value it cannot store (an int beyond 64 bits).
_CORRUPT = (TypeError, ValueError, OverflowError, psycopg.DataError)


class PostgresEventLog(PostgresStore):
    """EventLog adapter on one PostgreSQL database (see archive.ports.EventLog).

    The log is stored as segments: a run of contiguous events of one term, one row each
    (first and last position, term, the events as the msgpack array the live stream
    carries, archive.streamformat). A leader's batch is one segment, so an append costs
    one row and one round trip however many events it holds: the server-side function
    (archive.schema) takes the writer lock, checks the batch starts at the real tail + 1
    with a term not below the tail's, inserts and commits. The batch is checked in Python
    first against the tail cached in this object; the server's check makes the append
    correct even when the cache is stale because another process truncated or appended:
    the batch is then refused and the cache re-read. A batch spanning terms (a replay) is
    one segment per term, in one transaction.

    Reads decode segments and cut them to the range asked. Truncation rewrites the segment
    it falls in; retention deletes whole segments (it may keep a few events more).

    One connection for writes and point queries; read() opens its own so a long replay
    never holds the writer's transaction. Use an instance from one thread at a time; a
    lost connection is re-opened on the next call.
    """

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self._tail: tuple[int, int] | None = None
        self._prepared_on: pq.abc.PGconn | None = None  # the connection _PREPARED exists on

    # -- writing -----------------------------------------------------------------------

    def append(self, entries: Sequence[LogEntry]) -> None:
        if not entries:
            return
        _validate_batch(entries, *self.tail())
        segments = _segments(entries)
        conn = self._connection()
        try:
            if len(segments) == 1:
                self._append_one(conn, segments[0])  # autocommit: its own transaction
            else:
                with conn.transaction():
                    for segment in segments:
                        conn.execute(_APPEND, segment)
        except psycopg.Error as exc:
            if exc.sqlstate in (GAP_SQLSTATE, TERM_SQLSTATE):
                self._refused_by_server(entries, exc)
            self._tail = None  # outcome unknown: the next tail() re-reads it
            raise ArchiveUnavailableError(f"append failed, outcome unknown: {exc}") from exc
        except BaseException:
            self._tail = None
            raise
        last = entries[-1]
        self._tail = (last.position, last.term)

    def _append_one(self, conn: psycopg.Connection, segment: tuple[int, int, int, bytes]) -> None:
        """One segment, one round trip, on the bare libpq connection: a prepared statement
        with binary parameters (psycopg's execute() costs about 50 µs of Python a call
        here; this about 10). The GIL is let go while the server works and syncs."""
        pgconn = conn.pgconn
        if self._prepared_on is not pgconn:  # a new connection: prepare it there
            result = pgconn.prepare(_PREPARED, _APPEND_SQL, _APPEND_TYPES)
            if result.status != pq.ExecStatus.COMMAND_OK:
                raise _error(conn, result)
            self._prepared_on = pgconn
        first, last, term, blob = segment
        result = pgconn.exec_prepared(_PREPARED, [_INT8(first), _INT8(last), _INT8(term), blob], _BINARY, 1)
        if result.status != pq.ExecStatus.TUPLES_OK:
            raise _error(conn, result)

    def _refused_by_server(self, entries: Sequence[LogEntry], exc: psycopg.Error) -> NoReturn:
        """The database refused a batch that fit the cached tail: another process changed
        the log. Re-read the tail and report the batch against it."""
        _validate_batch(entries, *self.refresh_tail())
        raise LogGapError(
            f"the log changed under this writer: {exc}",
            tail=self._tail[0],
            first=entries[0].position,
        ) from exc

    def truncate_after(self, position: int) -> int:
        """Also deletes snapshots above position: they hold events that are now gone."""
        if position < 0:
            raise ValueError(f"position must be >= 0, got {position}")
        with self._writer() as cur:
            deleted = 0
            cur.execute(_SEGMENT_AT, (position,))
            row = cur.fetchone()
            if row is not None and row[1] > position:  # the cut falls inside this segment
                first, last, _term, blob = row
                kept = [entry for entry in decode_events(blob) if entry.position <= position]
                cur.execute(
                    f"UPDATE {SEGMENT_TABLE} SET last_position = %s, events = %b WHERE first_position = %s",
                    (position, encode_events(kept), first),
                )
                deleted += last - position
            cur.execute(
                f"DELETE FROM {SEGMENT_TABLE} WHERE first_position > %s "
                "RETURNING last_position - first_position + 1",
                (position,),
            )
            deleted += sum(count for (count,) in cur.fetchall())
            if deleted:
                cur.execute(f"UPDATE {META_TABLE} SET truncations = truncations + 1")
            cur.execute(f"DELETE FROM {SNAPSHOT_TABLE} WHERE position > %s", (position,))
            cur.execute(_SELECT_TAIL)
            tail = cur.fetchone() or (0, 0)
        self._tail = (tail[0], tail[1])
        return deleted

    def delete_before(self, position: int, keep_from_bound: int) -> int:
        with self._writer() as cur:
            cur.execute(f"SELECT max(position) FROM {SNAPSHOT_TABLE}")
            row = cur.fetchone()
            snapshot_position = row[0] if row else None
            if snapshot_position is None:
                raise RetentionError(
                    f"cannot delete entries below {position}: there is no snapshot to restore from"
                )
            if position > snapshot_position:
                raise RetentionError(
                    f"cannot delete entries below {position}: the latest snapshot is at "
                    f"{snapshot_position} and replay from it needs the entries after it"
                )
            if position > keep_from_bound:
                raise RetentionError(
                    f"cannot delete entries below {position}: position {keep_from_bound} "
                    f"is still needed (a follower has not archived past it)"
                )
            cur.execute(
                f"DELETE FROM {SEGMENT_TABLE} WHERE last_position < %s "
                "RETURNING last_position - first_position + 1",
                (position,),
            )
            deleted = sum(count for (count,) in cur.fetchall())
            cur.execute(_SEGMENT_AT, (position,))
            row = cur.fetchone()
            if row is not None and row[0] < position <= row[1]:  # the cut falls inside it
                first, _last, _term, blob = row
                kept = [entry for entry in decode_events(blob) if entry.position >= position]
                cur.execute(
                    f"UPDATE {SEGMENT_TABLE} SET first_position = %s, events = %b WHERE first_position = %s",
                    (position, encode_events(kept), first),
                )
                deleted += position - first
            return deleted

    def start_at(self, entries: Sequence[LogEntry]) -> None:
        if not entries:
            return
        first = entries[0]
        _validate_batch(entries, first.position - 1, first.term)
        with self._writer() as cur:
            # Under the writer lock: no append can slip in between the check and the insert.
            cur.execute(_SELECT_TAIL)
            row = cur.fetchone()
            if row is not None:
                tail = row[0]
                raise LogGapError(
                    f"cannot start the log at {first.position}: it is not empty (tail {tail})",
                    tail=tail,
                    first=first.position,
                )
            for segment in _segments(entries):
                cur.execute(_INSERT, segment)
        last = entries[-1]
        self._tail = (last.position, last.term)

    def renew(self) -> str:
        with self._writer() as cur:
            # TRUNCATE, not DELETE: constant time however long the log was.
            cur.execute(f"TRUNCATE {SEGMENT_TABLE}, {SNAPSHOT_TABLE}")
            cur.execute(
                f"UPDATE {META_TABLE} SET truncations = 0, "
                "archive_id = md5(random()::text || clock_timestamp()::text) RETURNING archive_id"
            )
            row = cur.fetchone()
        self._tail = (0, 0)
        return str(row[0])

    # -- reading -----------------------------------------------------------------------

    def reclaim(self) -> None:
        """VACUUM the segment table (and its TOAST table, where the segments' bytes live):
        without it the files keep every segment ever deleted until autovacuum comes, and a
        server may run with autovacuum off (this development machine's does) or too slow
        for a log trimmed every few seconds; a 30-minute soak's archives, each holding
        about 650,000 events, had grown to 1.2-2.7 GB. Plain VACUUM takes no lock that
        appends or reads wait for."""
        self._connection().execute(f"VACUUM {SEGMENT_TABLE}")

    def size(self) -> LogSize:
        row = (
            self._connection()
            .execute(
                f"SELECT min(first_position), max(last_position), pg_total_relation_size('{SEGMENT_TABLE}') "
                f"+ pg_total_relation_size('{SNAPSHOT_TABLE}') FROM {SEGMENT_TABLE}"
            )
            .fetchone()
        )
        first, last, size = row
        return LogSize(first or 0, last or 0, int(size or 0))

    def tail(self) -> tuple[int, int]:
        if self._tail is None:
            row = self._connection().execute(_SELECT_TAIL).fetchone()
            self._tail = (row[0], row[1]) if row else (0, 0)
        return self._tail

    def archive_id(self) -> str:
        """The id made when this archive was created (DESIGN §4 "Archive identity")."""
        return read_archive_id(self._connection())

    def count_boot(self) -> int:
        """This process opens the archive: its boot number, higher than any before it."""
        return count_boot(self._connection())

    def truncations(self) -> int:
        """How many times truncate_after() dropped entries from this archive."""
        return read_truncations(self._connection())

    def refresh_tail(self) -> tuple[int, int]:
        """Forget the cached tail and read it from the database."""
        self._tail = None
        return self.tail()

    def read(
        self, start: int, end: int | None = None, batch_size: int = 5000
    ) -> Iterator[list[LogEntry]]:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        upper = end if end is not None else 2**63 - 1
        batch: list[LogEntry] = []
        with psycopg.connect(self._location) as conn:
            # binary=True: bytea arrives as raw bytes instead of hex text. From the segment
            # holding `start` (or the first after it) to the one holding `upper`.
            with conn.cursor(name="archive_read", binary=True) as cur:
                cur.itersize = max(1, batch_size // 100)
                cur.execute(
                    f"SELECT events FROM {SEGMENT_TABLE} WHERE first_position >= COALESCE("
                    f"(SELECT max(first_position) FROM {SEGMENT_TABLE} WHERE first_position <= %s), 0) "
                    "AND first_position <= %s ORDER BY first_position",
                    (start, upper),
                )
                for (blob,) in cur:
                    entries = _decode_segment(blob)
                    if entries[0].position < start or entries[-1].position > upper:
                        entries = [e for e in entries if start <= e.position <= upper]
                    batch.extend(entries)
                    while len(batch) >= batch_size:
                        yield batch[:batch_size]
                        batch = batch[batch_size:]
            conn.rollback()
        if batch:
            yield batch

    def term_at(self, position: int) -> int | None:
        row = self._connection().execute(_SEGMENT_AT, (position,)).fetchone()
        if row is None or row[1] < position:
            return None
        return row[2]

    def close(self) -> None:
        super().close()
        self._tail = None

    # -- plumbing ----------------------------------------------------------------------

    def _connected(self) -> None:
        self._tail = None  # another process may have changed the log meanwhile

    @contextlib.contextmanager
    def _writer(self) -> Iterator[psycopg.Cursor]:
        """A transaction holding the archive's writer lock."""
        conn = self._connection()
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK_KEY,))
                yield cur
        except psycopg.Error as exc:
            self._tail = None
            raise ArchiveUnavailableError(f"archive write failed: {exc}") from exc



def _segments(entries: Sequence[LogEntry]) -> list[tuple[int, int, int, bytes]]:
    """(first, last, term, encoded events) of each run of one term in a checked batch."""
    if entries[0].term == entries[-1].term:  # terms never decrease: one term throughout
        return [(entries[0].position, entries[-1].position, entries[0].term, _encode(entries))]
    out = []
    for term, run in itertools.groupby(entries, key=lambda entry: entry.term):
        run = list(run)
        out.append((run[0].position, run[-1].position, term, _encode(run)))
    return out


def _encode(entries: Sequence[LogEntry]) -> bytes:
    try:
        return encode_events(entries)
    except (TypeError, OverflowError, msgspec.EncodeError) as exc:
        raise CorruptEntryError(f"a field of the batch cannot be stored: {exc}") from exc


def _decode_segment(blob: bytes) -> list[LogEntry]:
    try:
        entries = decode_events(blob)
    except (msgspec.DecodeError, ValueError) as exc:
        raise CorruptEntryError(f"a segment of the archive cannot be decoded: {exc}") from exc
    if not entries:
        raise CorruptEntryError("an empty segment in the archive")
    return entries


def _validate_batch(entries: Sequence[LogEntry], tail_position: int, tail_term: int) -> None:
    """Check a batch against the tail. Column-wise checks run at C speed, which keeps
    validation a small part of an append."""
    try:
        positions, terms, kinds, timestamps, payloads = zip(*entries, strict=True)
    except (TypeError, ValueError) as exc:
        raise CorruptEntryError(f"entries must be 5-field LogEntry tuples: {exc}") from exc
    first = positions[0]
    if first != tail_position + 1:
        raise LogGapError(
            f"batch starts at position {first} but the log's tail is {tail_position}: "
            f"expected {tail_position + 1}",
            tail=tail_position,
            first=first,
        )
    if positions != tuple(range(first, first + len(positions))):
        raise LogGapError(
            f"batch starting at {first} is not contiguous", tail=tail_position, first=first
        )
    if terms[0] < tail_term:
        raise TermRegressionError(
            f"batch term {terms[0]} is below the log's tail term {tail_term}",
            tail_term=tail_term,
            term=terms[0],
        )
    if terms.count(terms[0]) != len(terms):
        for before, after in itertools.pairwise(terms):
            if after < before:
                raise TermRegressionError(
                    f"term goes back from {before} to {after} inside the batch",
                    tail_term=tail_term,
                    term=after,
                )
    _check_fields(terms, kinds, timestamps, payloads)


def _check_fields(terms, kinds, timestamps, payloads) -> None:
    """64-bit ints and non-empty bytes-like payloads (stored as bytes): what the replay
    decoder reads back. At C speed: struct.pack refuses what is not a 64-bit int, join
    what is not bytes-like."""
    for name, column in (("term", terms), ("kind", kinds), ("timestamp", timestamps)):
        try:
            struct.pack(f"{len(column)}q", *column)
        except struct.error as exc:
            raise CorruptEntryError(f"a {name} is not a 64-bit int: {exc}") from exc
    try:
        b"".join(payloads)
    except TypeError as exc:
        raise CorruptEntryError(f"a payload is not bytes: {exc}") from exc
    if b"" in payloads:
        raise CorruptEntryError("a payload is empty")



def _error(conn: psycopg.Connection, result: pq.abc.PGresult) -> psycopg.Error:
    """The psycopg exception for a failed result on the bare connection (sqlstate kept;
    a lost connection is an OperationalError, as psycopg raises it)."""
    if conn.pgconn.status == pq.ConnStatus.BAD:
        message = (conn.pgconn.error_message or b"the connection was lost").decode(errors="replace")
        return psycopg.OperationalError(message.strip())
    return psycopg.errors.error_from_result(result)
