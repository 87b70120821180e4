"""Creating a node's archive: its PostgreSQL database and tables, idempotently."""

from __future__ import annotations

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

EVENT_TABLE = "archive_event"
SNAPSHOT_TABLE = "archive_snapshot"
META_TABLE = "archive_meta"

# Key of the transaction-scoped advisory lock that serialises writers of one archive
# (append, truncate, retention, table creation). Arbitrary, but fixed forever.
WRITER_LOCK_KEY = 0x7EC0A2C1

_TABLES = {
    EVENT_TABLE: f"""
        CREATE TABLE IF NOT EXISTS {EVENT_TABLE} (
            position  bigint PRIMARY KEY,
            term      bigint NOT NULL,
            kind      bigint NOT NULL,
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
    # The archive's identity (DESIGN §4 "Archive identity"): made once, with the tables.
    # A node whose archive was lost and created anew reports another id, so the control
    # plane knows it no longer holds what it acknowledged before.
    META_TABLE: f"""
        CREATE TABLE IF NOT EXISTS {META_TABLE} (
            singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
            archive_id text NOT NULL DEFAULT md5(random()::text || clock_timestamp()::text),
            created_at timestamptz NOT NULL DEFAULT now()
        )""",
}

# Runs at the end of every append, in the COMMIT's round trip: it serialises the append
# with other writers (truncation, retention) and checks that the row before the batch
# exists with a term not above the batch's. With the primary key (no overlap) and the
# log being contiguous, that proves the batch starts exactly at the real tail + 1, even
# when the appender's cached tail is stale. Plans inside a function are cached per
# session, which is what makes this cheaper than a separate tail query.
CHECK_APPEND_FUNCTION = "archive_check_append"
GAP_SQLSTATE = "TE001"
TERM_SQLSTATE = "TE002"
_CHECK_APPEND = f"""
    CREATE OR REPLACE FUNCTION {CHECK_APPEND_FUNCTION}(p_first bigint, p_term bigint)
    RETURNS void LANGUAGE plpgsql AS $$
    DECLARE
        previous_term bigint;
    BEGIN
        PERFORM pg_advisory_xact_lock({WRITER_LOCK_KEY});
        IF p_first > 1 THEN
            SELECT term INTO previous_term FROM {EVENT_TABLE} WHERE position = p_first - 1;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'the log has no position %: a batch starting at % leaves a gap',
                    p_first - 1, p_first USING ERRCODE = '{GAP_SQLSTATE}';
            END IF;
            IF previous_term > p_term THEN
                RAISE EXCEPTION 'batch term % is below term % at position %',
                    p_term, previous_term, p_first - 1 USING ERRCODE = '{TERM_SQLSTATE}';
            END IF;
        END IF;
    END $$"""


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
        conn.execute(f"INSERT INTO {META_TABLE} DEFAULT VALUES ON CONFLICT DO NOTHING")
        # Rejoin truncations this archive has made: a position that went back with a
        # higher count is a rejoin, not a lost archive (nodes.protocol.identity).
        conn.execute(f"ALTER TABLE {META_TABLE} ADD COLUMN IF NOT EXISTS truncations bigint NOT NULL DEFAULT 0")
        # Processes that opened this archive: orders a node's reports across its restarts.
        conn.execute(f"ALTER TABLE {META_TABLE} ADD COLUMN IF NOT EXISTS boots bigint NOT NULL DEFAULT 0")
        conn.execute(_CHECK_APPEND)  # always: an upgraded archive gets the current version
    return created


def count_boot(conn: psycopg.Connection) -> int:
    """Count one more process opening this archive; returns its number (1, 2, ...)."""
    row = conn.execute(f"UPDATE {META_TABLE} SET boots = boots + 1 RETURNING boots").fetchone()
    return int(row[0]) if row else 0


def read_truncations(conn: psycopg.Connection) -> int:
    """How many truncations (rejoin) this archive has made since it was created."""
    row = conn.execute(f"SELECT truncations FROM {META_TABLE}").fetchone()
    return int(row[0]) if row else 0


def read_archive_id(conn: psycopg.Connection) -> str:
    """The archive's identity, made when its tables were created."""
    row = conn.execute(f"SELECT archive_id FROM {META_TABLE}").fetchone()
    if row is None:
        raise LookupError("the archive has no identity row: run create_archive first")
    return str(row[0])


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
