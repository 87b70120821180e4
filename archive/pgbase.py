"""What the archive's PostgreSQL adapters share: one lazy connection, re-opened when lost."""

from __future__ import annotations

from typing import Self

import psycopg


class PostgresStore:
    """One autocommit connection to an archive database, opened on first use and again
    after it broke. Use an instance from one thread at a time."""

    def __init__(self, location: str) -> None:
        self._location = location
        self._conn: psycopg.Connection | None = None

    def close(self) -> None:
        """Release the connection. Idempotent."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _connection(self) -> psycopg.Connection:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                conn.close()
            self._conn = conn = psycopg.connect(self._location, autocommit=True)
            self._connected()
        return conn

    def _connected(self) -> None:
        """Called after a new connection was opened (caches may be stale)."""
