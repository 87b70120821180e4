"""The event log on PostgreSQL: batched binary COPY appends, streamed reads, truncation, retention."""

from __future__ import annotations

import contextlib
import itertools
import struct
from collections.abc import Iterator, Sequence
from typing import NoReturn

import psycopg
from psycopg.rows import args_row

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
    CHECK_APPEND_FUNCTION,
    EVENT_TABLE,
    GAP_SQLSTATE,
    META_TABLE,
    SNAPSHOT_TABLE,
    TERM_SQLSTATE,
    WRITER_LOCK_KEY,
    count_boot,
    read_archive_id,
    read_truncations,
)

_COLUMNS = "position, term, kind, timestamp, payload"
_COPY = f"COPY {EVENT_TABLE} ({_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_COPY_TYPES = ("int8", "int8", "int8", "int8", "bytea")
# What psycopg raises while encoding a row it cannot store (wrong type, int beyond 64
# bits) and what the server raises for a NULL (a None payload passes the bytea dumper).
_CORRUPT = (
    TypeError,
    ValueError,
    OverflowError,
    psycopg.DataError,
    psycopg.errors.NotNullViolation,
)
_SELECT_TAIL = f"SELECT position, term FROM {EVENT_TABLE} ORDER BY position DESC LIMIT 1"


class PostgresEventLog(PostgresStore):
    """EventLog adapter on one PostgreSQL database (see archive.ports.EventLog).

    append() is BEGIN, one binary COPY, then one round trip that runs the server-side
    check (archive.schema's archive_check_append) and COMMIT: the same number of round
    trips as a bare COPY transaction. The batch is checked in Python against the tail
    cached in this object; the server-side check (row before the batch exists, its term
    is not above the batch's, under the writer lock) plus the primary key (no overlap)
    make the append correct even when the cache is stale because another process
    truncated or appended: the batch is then refused and the cache re-read.

    One connection for writes and point queries; read() opens its own so a long replay
    never holds the writer's transaction. Use an instance from one thread at a time; a
    lost connection is re-opened on the next call.
    """

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self._tail: tuple[int, int] | None = None

    # -- writing -----------------------------------------------------------------------

    def append(self, entries: Sequence[LogEntry]) -> None:
        if not entries:
            return
        _validate_batch(entries, *self.tail())
        first = entries[0]
        conn = self._connection()
        try:
            with conn.cursor() as cur:
                cur.execute("BEGIN")
                try:
                    data = _binary_copy_data(entries)
                    with cur.copy(_COPY) as copy:
                        copy.write(data)
                except _CORRUPT as exc:
                    raise CorruptEntryError(
                        f"a field of the batch cannot be stored: {exc}"
                    ) from exc
                # The server-side check and the commit share one round trip; if the check
                # raises, the COMMIT after it never runs.
                cur.execute(
                    f"SELECT {CHECK_APPEND_FUNCTION}({int(first.position)}, {int(first.term)}); "
                    "COMMIT"
                )
        except CorruptEntryError:
            self._rollback()
            raise
        except psycopg.errors.UniqueViolation as exc:
            self._refused_by_server(entries, exc)
        except psycopg.Error as exc:
            if exc.sqlstate in (GAP_SQLSTATE, TERM_SQLSTATE):
                self._refused_by_server(entries, exc)
            self._tail = None  # outcome unknown: the next tail() re-reads it
            self._rollback()
            raise ArchiveUnavailableError(f"append failed, outcome unknown: {exc}") from exc
        except BaseException:
            self._tail = None
            self._rollback()
            raise
        last = entries[-1]
        self._tail = (last.position, last.term)

    def _refused_by_server(self, entries: Sequence[LogEntry], exc: psycopg.Error) -> NoReturn:
        """The database refused a batch that fit the cached tail: another process changed
        the log. Re-read the tail and report the batch against it."""
        self._rollback()
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
            cur.execute(f"DELETE FROM {EVENT_TABLE} WHERE position > %s", (position,))
            deleted = cur.rowcount
            if deleted:
                cur.execute(f"UPDATE {META_TABLE} SET truncations = truncations + 1")
            cur.execute(f"DELETE FROM {SNAPSHOT_TABLE} WHERE position > %s", (position,))
            cur.execute(_SELECT_TAIL)
            tail = cur.fetchone() or (0, 0)
        self._tail = tail
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
            cur.execute(f"DELETE FROM {EVENT_TABLE} WHERE position < %s", (position,))
            return cur.rowcount

    def start_at(self, entries: Sequence[LogEntry]) -> None:
        if not entries:
            return
        first = entries[0]
        _validate_batch(entries, first.position - 1, first.term)
        with self._writer() as cur:
            # Under the writer lock: no append can slip in between the check and the COPY.
            cur.execute(_SELECT_TAIL)
            row = cur.fetchone()
            if row is not None:
                tail = row[0]
                raise LogGapError(
                    f"cannot start the log at {first.position}: it is not empty (tail {tail})",
                    tail=tail,
                    first=first.position,
                )
            try:
                with cur.copy(_COPY) as copy:
                    copy.write(_binary_copy_data(entries))
            except _CORRUPT as exc:
                raise CorruptEntryError(f"a field of the batch cannot be stored: {exc}") from exc
        last = entries[-1]
        self._tail = (last.position, last.term)

    def renew(self) -> str:
        with self._writer() as cur:
            # TRUNCATE, not DELETE: constant time however long the log was.
            cur.execute(f"TRUNCATE {EVENT_TABLE}, {SNAPSHOT_TABLE}")
            cur.execute(
                f"UPDATE {META_TABLE} SET truncations = 0, "
                "archive_id = md5(random()::text || clock_timestamp()::text) RETURNING archive_id"
            )
            row = cur.fetchone()
        self._tail = (0, 0)
        return str(row[0])

    # -- reading -----------------------------------------------------------------------

    def size(self) -> LogSize:
        row = (
            self._connection()
            .execute(
                f"SELECT min(position), max(position), pg_total_relation_size('{EVENT_TABLE}') "
                f"+ pg_total_relation_size('{SNAPSHOT_TABLE}') FROM {EVENT_TABLE}"
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
        with psycopg.connect(self._location) as conn:
            # binary=True: bytea arrives as raw bytes instead of hex text.
            with conn.cursor(
                name="archive_read", binary=True, row_factory=args_row(LogEntry)
            ) as cur:
                cur.itersize = batch_size
                cur.execute(
                    f"SELECT {_COLUMNS} FROM {EVENT_TABLE} "
                    "WHERE position >= %s AND position <= %s ORDER BY position",
                    (start, upper),
                )
                while batch := cur.fetchmany(batch_size):
                    yield batch
            conn.rollback()

    def term_at(self, position: int) -> int | None:
        row = (
            self._connection()
            .execute(f"SELECT term FROM {EVENT_TABLE} WHERE position = %s", (position,))
            .fetchone()
        )
        return row[0] if row else None

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

    def _rollback(self) -> None:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            return
        with contextlib.suppress(psycopg.Error):
            conn.execute("ROLLBACK")


_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_COPY_TRAILER = struct.pack("!h", -1)
# One tuple: 5 fields; four int8 (length 8) and the payload's length, then its bytes.
_ROW_HEAD = struct.Struct("!hiqiqiqiqi").pack


def _binary_copy_data(entries: Sequence[LogEntry]) -> bytes:
    """The whole batch in PostgreSQL's binary COPY format, built in one pass.

    psycopg's write_row costs about 5 us a row in Python; one struct.pack a row plus a
    join is several times cheaper, and the append is on every node's hot path.
    """
    parts = [_COPY_HEADER]
    append = parts.append
    try:
        for position, term, kind, timestamp, payload in entries:
            append(_ROW_HEAD(5, 8, position, 8, term, 8, kind, 8, timestamp, len(payload)))
            append(payload)
    except struct.error as exc:
        raise CorruptEntryError(f"a field of the batch cannot be stored: {exc}") from exc
    except TypeError as exc:
        raise CorruptEntryError(f"a field of the batch has the wrong type: {exc}") from exc
    append(_COPY_TRAILER)
    try:
        return b"".join(parts)
    except TypeError as exc:
        raise CorruptEntryError(f"a payload is not bytes: {exc}") from exc


def _validate_batch(entries: Sequence[LogEntry], tail_position: int, tail_term: int) -> None:
    """Check a batch against the tail. Column-wise checks run at C speed, which keeps
    validation a small part of an append; field types are checked by the COPY encoder
    and NULLs by the table (both reported as CorruptEntryError)."""
    try:
        positions, terms, _kinds, _timestamps, payloads = zip(*entries, strict=True)
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
    if b"" in payloads:
        raise CorruptEntryError("a payload is empty")
