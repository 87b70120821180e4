from __future__ import annotations

import uuid

import psycopg
from psycopg.conninfo import make_conninfo

from archive import create_archive
from archive.schema import read_archive_id
from tests.archive.conftest import ADMIN_URL, drop_database


def test_create_archive_is_idempotent() -> None:
    dbname = f"tec_test_{uuid.uuid4().hex[:8]}"
    url = make_conninfo(ADMIN_URL, dbname=dbname)
    try:
        assert create_archive(url) is True
        with psycopg.connect(url) as conn:
            identity = read_archive_id(conn)
        assert create_archive(url) is False
        with psycopg.connect(url) as conn:
            tables = {
                row[0]
                for row in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                )
            }
            # The archive's identity is made once, with the archive (DESIGN §4).
            assert read_archive_id(conn) == identity
        assert tables == {"archive_segment", "archive_snapshot", "archive_meta"}
    finally:
        drop_database(dbname)


def test_create_archive_adds_missing_tables_to_an_existing_database(location: str) -> None:
    with psycopg.connect(location, autocommit=True) as conn:
        conn.execute("DROP TABLE archive_snapshot")
    assert create_archive(location) is True
    assert create_archive(location) is False


def test_an_archive_created_anew_has_another_identity() -> None:
    """DESIGN §4 "Archive identity": a lost and recreated archive is told apart."""
    dbname = f"tec_test_{uuid.uuid4().hex[:8]}"
    url = make_conninfo(ADMIN_URL, dbname=dbname)
    try:
        create_archive(url)
        with psycopg.connect(url) as conn:
            first = read_archive_id(conn)
        drop_database(dbname)
        create_archive(url)
        with psycopg.connect(url) as conn:
            assert read_archive_id(conn) != first
    finally:
        drop_database(dbname)


def test_an_archive_of_one_row_per_event_is_converted_to_segments(location: str) -> None:
    """An archive made before segments (archive_event, a row per event) keeps every
    entry, its identity and its tail when create_archive() converts it."""
    from archive import PostgresEventLog
    from archive.schema import LEGACY_SEGMENT_EVENTS
    from tests.archive.conftest import make_entries

    entries = make_entries(1, LEGACY_SEGMENT_EVENTS + 5, term=1) + make_entries(LEGACY_SEGMENT_EVENTS + 6, 7, term=3)
    with psycopg.connect(location, autocommit=True) as conn:
        identity = read_archive_id(conn)
        conn.execute("DROP TABLE archive_segment")
        conn.execute(
            "CREATE TABLE archive_event (position bigint PRIMARY KEY, term bigint NOT NULL, "
            "kind bigint NOT NULL, timestamp bigint NOT NULL, payload bytea NOT NULL)"
        )
        with conn.cursor() as cur, cur.copy("COPY archive_event FROM STDIN") as copy:
            for entry in entries:
                copy.write_row(tuple(entry))
    assert create_archive(location) is True
    with psycopg.connect(location) as conn:
        assert conn.execute("SELECT to_regclass('archive_event')").fetchone()[0] is None
        segments = conn.execute(
            "SELECT first_position, last_position, term FROM archive_segment ORDER BY first_position"
        ).fetchall()
        assert read_archive_id(conn) == identity
    last = LEGACY_SEGMENT_EVENTS + 12
    assert segments == [(1, LEGACY_SEGMENT_EVENTS, 1), (LEGACY_SEGMENT_EVENTS + 1, LEGACY_SEGMENT_EVENTS + 5, 1),
                        (LEGACY_SEGMENT_EVENTS + 6, last, 3)]  # fmt: skip
    with PostgresEventLog(location) as log:
        assert [entry for batch in log.read(1) for entry in batch] == entries
        assert log.tail() == (last, 3)
        log.append(make_entries(last + 1, 3, term=3))
        assert log.tail() == (last + 3, 3)
