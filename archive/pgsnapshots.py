"""The engine's snapshots on PostgreSQL, in the same database as the node's event log."""

from __future__ import annotations

import builtins

from psycopg.rows import args_row

from archive.entries import Snapshot, SnapshotInfo
from archive.errors import SnapshotConflictError
from archive.pgbase import PostgresStore
from archive.schema import SNAPSHOT_TABLE


class PostgresSnapshotStore(PostgresStore):
    """SnapshotStore adapter (see archive.ports.SnapshotStore). One connection, autocommit."""

    def save(self, position: int, term: int, digest: str, data: bytes) -> None:
        if not isinstance(data, bytes):
            raise TypeError("snapshot data must be bytes")
        conn = self._connection()
        inserted = conn.execute(
            f"INSERT INTO {SNAPSHOT_TABLE} (position, term, digest, data) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (position) DO NOTHING",
            (position, term, digest, data),
        ).rowcount
        if inserted:
            return
        row = conn.execute(
            f"SELECT term, digest FROM {SNAPSHOT_TABLE} WHERE position = %s", (position,)
        ).fetchone()
        if row is not None and (row[0], row[1]) != (term, digest):
            raise SnapshotConflictError(
                f"a snapshot at position {position} already exists with term {row[0]} and "
                f"digest {row[1]}, not term {term} and digest {digest}: states diverged"
            )

    def latest(self, at_or_below: int | None = None) -> Snapshot | None:
        bound = at_or_below if at_or_below is not None else 2**63 - 1
        with self._connection().cursor(binary=True, row_factory=args_row(Snapshot)) as cur:
            cur.execute(
                f"SELECT position, term, digest, data, created_at FROM {SNAPSHOT_TABLE} "
                "WHERE position <= %s ORDER BY position DESC LIMIT 1",
                (bound,),
            )
            return cur.fetchone()

    def list(self) -> builtins.list[SnapshotInfo]:
        with self._connection().cursor(row_factory=args_row(SnapshotInfo)) as cur:
            cur.execute(
                f"SELECT position, term, digest, octet_length(data), created_at "
                f"FROM {SNAPSHOT_TABLE} ORDER BY position DESC"
            )
            return cur.fetchall()

    def prune(self, keep: int) -> int:
        if keep < 1:
            raise ValueError(f"keep must be >= 1 (the log may depend on the latest), got {keep}")
        return (
            self._connection()
            .execute(
                f"DELETE FROM {SNAPSHOT_TABLE} WHERE position < ("
                f"SELECT min(position) FROM (SELECT position FROM {SNAPSHOT_TABLE} "
                "ORDER BY position DESC LIMIT %s) AS kept)",
                (keep,),
            )
            .rowcount
        )

