from __future__ import annotations

import pytest
from redis import Redis

from archive import (
    FencedError,
    PostgresEventLog,
    PostgresSnapshotStore,
    RangeUnavailableError,
    RedisEventReader,
    delete_replay,
    publish_replay,
    set_fence,
)
from tests.archive.conftest import make_entries
from tests.archive.test_event_log import read_all
from wire.keys import keys


def read_replay(redis: Redis, cluster: str, node: str, after: int) -> list:
    reader = RedisEventReader(redis, keys(cluster).replay(node))
    got = []
    while batch := reader.read(after, block_ms=0, count=7):
        got.extend(batch)
        after = batch[-1].position
    return got


def test_replay_of_a_range_equals_the_archive_byte_for_byte(
    log: PostgresEventLog, redis: Redis, cluster: str
) -> None:
    entries = make_entries(1, 6000, term=1) + make_entries(6001, 6000, term=2, size=300)
    for first in range(0, len(entries), 1000):
        log.append(entries[first : first + 1000])
    count = publish_replay(log, redis, cluster, "node-b", 1500, 11_000)
    assert count == 11_000 - 1500 + 1
    assert read_replay(redis, cluster, "node-b", 1499) == entries[1499:11_000]
    assert redis.ttl(keys(cluster).replay("node-b")) > 0
    delete_replay(redis, cluster, "node-b")
    assert redis.exists(keys(cluster).replay("node-b")) == 0


def test_replay_to_the_tail_and_again_from_scratch(
    log: PostgresEventLog, redis: Redis, cluster: str
) -> None:
    log.append(make_entries(1, 100))
    assert publish_replay(log, redis, cluster, "n1", 91) == 10
    assert publish_replay(log, redis, cluster, "n1", 51) == 50  # the stream is recreated
    assert read_replay(redis, cluster, "n1", 50) == make_entries(51, 50)


def test_replay_refuses_a_range_the_archive_no_longer_holds(
    log: PostgresEventLog, snapshots: PostgresSnapshotStore, redis: Redis, cluster: str
) -> None:
    log.append(make_entries(1, 100))
    snapshots.save(50, 1, "d", b"s")
    log.delete_before(50, keep_from_bound=50)
    with pytest.raises(RangeUnavailableError, match="no longer holds position 10"):
        publish_replay(log, redis, cluster, "n1", 10, 60)
    assert redis.xlen(keys(cluster).replay("n1")) == 0


def test_fenced_replay_stops_when_the_term_moves_on(
    log: PostgresEventLog, redis: Redis, cluster: str
) -> None:
    log.append(make_entries(1, 3000))
    set_fence(redis, cluster, 4)
    assert publish_replay(log, redis, cluster, "n1", 1, term_check=4, entry_events=500) == 3000
    assert read_all(log) == read_replay(redis, cluster, "n1", 0)
    set_fence(redis, cluster, 5)
    with pytest.raises(FencedError):
        publish_replay(log, redis, cluster, "n1", 1, term_check=4)
