"""Creating a node's archive: its PostgreSQL database and tables, idempotently."""

from __future__ import annotations

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

# The log, one row per segment: a run of contiguous events of one term (a leader's batch
# as it was archived), stored as the msgpack array the live stream carries
# (archive.streamformat): a row per batch, not per event, as Aeron's archive stores
# segments. An archive made before segments had one row per event in LEGACY_EVENT_TABLE;
# create_archive() converts it.
SEGMENT_TABLE = "archive_segment"
LEGACY_EVENT_TABLE = "archive_event"
SNAPSHOT_TABLE = "archive_snapshot"
META_TABLE = "archive_meta"

# Key of the transaction-scoped advisory lock that serialises writers of one archive
# (append, truncate, retention, table creation). Arbitrary, but fixed forever.
WRITER_LOCK_KEY = 0x7EC0A2C1

_TABLES = {
    SEGMENT_TABLE: f"""
        CREATE TABLE IF NOT EXISTS {SEGMENT_TABLE} (
            first_position bigint PRIMARY KEY,
            last_position  bigint NOT NULL CHECK (last_position >= first_position),
            term           bigint NOT NULL,
            events         bytea NOT NULL
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

# An append is one call of this function, in its own transaction: one round trip. It
# serialises the append with other writers (truncation, retention) and checks that the
# segment starts right after the log's tail, with a term not below the tail's; then
# stores it. That holds even when the appender's cached tail is stale. An empty log
# takes position 1 only (start_at() begins one elsewhere, under the same lock).
APPEND_FUNCTION = "archive_append_segment"
GAP_SQLSTATE = "TE001"
TERM_SQLSTATE = "TE002"
_APPEND = f"""
    CREATE OR REPLACE FUNCTION {APPEND_FUNCTION}(
        p_first bigint, p_last bigint, p_term bigint, p_events bytea
    ) RETURNS void LANGUAGE plpgsql AS $$
    DECLARE
        tail_position bigint;
        tail_term bigint;
    BEGIN
        PERFORM pg_advisory_xact_lock({WRITER_LOCK_KEY});
        SELECT last_position, term INTO tail_position, tail_term
            FROM {SEGMENT_TABLE} ORDER BY first_position DESC LIMIT 1;
        IF NOT FOUND THEN
            tail_position := 0;
            tail_term := 0;
        END IF;
        IF p_first <> tail_position + 1 THEN
            RAISE EXCEPTION 'the log''s tail is %: a batch starting at % leaves a gap or overlaps',
                tail_position, p_first USING ERRCODE = '{GAP_SQLSTATE}';
        END IF;
        IF tail_term > p_term THEN
            RAISE EXCEPTION 'batch term % is below term % at position %',
                p_term, tail_term, tail_position USING ERRCODE = '{TERM_SQLSTATE}';
        END IF;
        INSERT INTO {SEGMENT_TABLE} (first_position, last_position, term, events)
            VALUES (p_first, p_last, p_term, p_events);
    END $$"""
_DROP_LEGACY_CHECK = "DROP FUNCTION IF EXISTS archive_check_append(bigint, bigint)"


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
        # Segments are kilobytes of msgpack: stored out of line without compression (pglz
        # would cost more CPU than the whole append; the disk is not the limit).
        conn.execute(f"ALTER TABLE {SEGMENT_TABLE} ALTER COLUMN events SET STORAGE EXTERNAL")
        conn.execute(_APPEND)  # always: an upgraded archive gets the current version
        conn.execute(_DROP_LEGACY_CHECK)
        if conn.execute("SELECT to_regclass(%s)", (LEGACY_EVENT_TABLE,)).fetchone()[0] is not None:
            _convert_legacy_events(conn)
            created = True
    return created


def _convert_legacy_events(conn: psycopg.Connection) -> None:
    """An archive from before segments: its rows become segments (one term, at most
    LEGACY_SEGMENT_EVENTS events each), in the caller's transaction, then the old table goes."""
    from archive.entries import LogEntry
    from archive.streamformat import encode_events

    segment: list[LogEntry] = []

    def flush() -> None:
        if segment:
            conn.execute(
                f"INSERT INTO {SEGMENT_TABLE} (first_position, last_position, term, events) "
                "VALUES (%s, %s, %s, %b)",
                (segment[0].position, segment[-1].position, segment[0].term, encode_events(segment)),
            )
            segment.clear()

    with conn.cursor(name="legacy_events", binary=True) as cur:
        cur.execute(
            f"SELECT position, term, kind, timestamp, payload FROM {LEGACY_EVENT_TABLE} ORDER BY position"
        )
        for row in cur:
            entry = LogEntry(*row[:4], bytes(row[4]))
            if segment and (entry.term != segment[0].term or len(segment) >= LEGACY_SEGMENT_EVENTS):
                flush()
            segment.append(entry)
    flush()
    conn.execute(f"DROP TABLE {LEGACY_EVENT_TABLE}")


LEGACY_SEGMENT_EVENTS = 1000


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
