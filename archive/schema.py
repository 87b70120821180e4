"""Creating a node's archive: its PostgreSQL database and tables, idempotently."""

from __future__ import annotations

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

EVENT_TABLE = "archive_event"
SNAPSHOT_TABLE = "archive_snapshot"

# Key of the transaction-scoped advisory lock that serialises writers of one archive
# (append, truncate, retention, table creation). Arbitrary, but fixed forever.
WRITER_LOCK_KEY = 0x7EC0A2C1

_TABLES = {
    EVENT_TABLE: f"""
        CREATE TABLE IF NOT EXISTS {EVENT_TABLE} (
            position  bigint PRIMARY KEY,
            term      bigint NOT NULL,
            kind      integer NOT NULL,
            timestamp bigint NOT NULL,
            payload   bytea NOT NULL
        )""",
    SNAPSHOT_TABLE: f"""
        CREATE TABLE IF NOT EXISTS {SNAPSHOT_TABLE} (
            position   bigint PRIMARY KEY,
            term       bigint NOT NULL,
            digest     text NOT NULL,
            data       bytea NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        )""",
}


def database_name(location: str) -> str:
    """The database an archive location (a PostgreSQL URL or conninfo) names."""
    dbname = conninfo_to_dict(location).get("dbname")
    if not dbname:
        raise ValueError(f"archive location {location!r} names no database")
    return str(dbname)


def create_archive(location: str) -> bool:
    """Create the archive's database (if missing) and tables; return True if anything was
    created. Safe to run again and from several processes at once."""
    created = _create_database(location)
    with psycopg.connect(location, autocommit=True) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK_KEY,))
        for table, ddl in _TABLES.items():
            exists = conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()
            if exists is None or exists[0] is None:
                conn.execute(ddl)
                created = True
    return created


def _create_database(location: str) -> bool:
    dbname = database_name(location)
    admin = make_conninfo(location, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if row is not None:
            return False
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        except psycopg.errors.DuplicateDatabase:
            return False  # another process created it between our check and our CREATE
        except psycopg.errors.UniqueViolation:
            return False  # same race, reported by the catalog instead
    return True
