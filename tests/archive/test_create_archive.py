from __future__ import annotations

import uuid

import psycopg
from psycopg.conninfo import make_conninfo

from archive import create_archive
from tests.archive.conftest import ADMIN_URL, drop_database


def test_create_archive_is_idempotent() -> None:
    dbname = f"tec_test_{uuid.uuid4().hex[:8]}"
    url = make_conninfo(ADMIN_URL, dbname=dbname)
    try:
        assert create_archive(url) is True
        assert create_archive(url) is False
        with psycopg.connect(url) as conn:
            tables = {
                row[0]
                for row in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                )
            }
        assert tables == {"archive_event", "archive_snapshot"}
    finally:
        drop_database(dbname)


def test_create_archive_adds_missing_tables_to_an_existing_database(location: str) -> None:
    with psycopg.connect(location, autocommit=True) as conn:
        conn.execute("DROP TABLE archive_snapshot")
    assert create_archive(location) is True
    assert create_archive(location) is False
