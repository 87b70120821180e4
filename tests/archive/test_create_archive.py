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
        assert tables == {"archive_event", "archive_snapshot", "archive_meta"}
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
