"""Fixtures for the archive's tests: a fresh PostgreSQL database and Redis namespace per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from redis import Redis

from archive import LogEntry, PostgresEventLog, PostgresSnapshotStore, create_archive
from wire.keys import keys

ADMIN_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def make_entries(first: int, count: int, term: int = 1, size: int = 100) -> list[LogEntry]:
    """`count` contiguous entries from `first`, with distinct payloads of `size` bytes."""
    return [
        LogEntry(p, term, p % 7, 1_700_000_000_000_000_000 + p, p.to_bytes(8, "big") * (size // 8))
        for p in range(first, first + count)
    ]


def drop_database(dbname: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
        )


@pytest.fixture
def location() -> Iterator[str]:
    """The location of a new, empty archive, dropped after the test."""
    dbname = f"tec_test_{uuid.uuid4().hex[:8]}"
    url = make_conninfo(ADMIN_URL, dbname=dbname)
    create_archive(url)
    try:
        yield url
    finally:
        drop_database(dbname)


@pytest.fixture
def log(location: str) -> Iterator[PostgresEventLog]:
    event_log = PostgresEventLog(location)
    yield event_log
    event_log.close()


@pytest.fixture
def snapshots(location: str) -> Iterator[PostgresSnapshotStore]:
    store = PostgresSnapshotStore(location)
    yield store
    store.close()


@pytest.fixture
def redis() -> Iterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def cluster(redis: Redis) -> Iterator[str]:
    """A unique cluster name; every key of its namespace is deleted after the test."""
    name = f"test_{uuid.uuid4().hex[:8]}"
    yield name
    stale = list(redis.scan_iter(match=keys(name).pattern))
    if stale:
        redis.delete(*stale)
