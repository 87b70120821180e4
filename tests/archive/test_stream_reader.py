from __future__ import annotations

import threading
import time

import pytest
from redis import Redis

from archive import (
    LogEntry,
    RedisEventPublisher,
    RedisEventReader,
    TrimmedError,
    set_fence,
)
from tests.archive.conftest import make_entries
from wire.keys import keys


@pytest.fixture
def publisher(redis: Redis, cluster: str) -> RedisEventPublisher:
    set_fence(redis, cluster, 1)
    return RedisEventPublisher(redis, cluster, maxlen=0)


@pytest.fixture
def reader(redis: Redis, cluster: str) -> RedisEventReader:
    return RedisEventReader(redis, keys(cluster).events)


def read_until(reader: RedisEventReader, after: int, last: int) -> list[LogEntry]:
    got: list[LogEntry] = []
    while after < last:
        batch = reader.read(after, block_ms=0, count=3)
        assert batch, "the reader stalled"
        got.extend(batch)
        after = batch[-1].position
    return got


def test_reads_batches_in_order_from_any_position(
    publisher: RedisEventPublisher, reader: RedisEventReader
) -> None:
    entries = make_entries(1, 50)
    for first in range(1, 51, 10):
        publisher.publish(1, entries[first - 1 : first + 9])
    assert read_until(reader, 0, 50) == entries
    # A cursor in the middle of a batch gets the rest of that batch first.
    assert read_until(reader, 15, 50) == entries[15:]
    assert reader.read(50, block_ms=0, count=10) == []
    assert reader.first_last_positions() == (1, 50)


def test_blocking_read_returns_empty_on_timeout_and_wakes_on_publish(
    publisher: RedisEventPublisher, reader: RedisEventReader
) -> None:
    started = time.monotonic()
    assert reader.read(0, block_ms=100, count=10) == []
    assert time.monotonic() - started >= 0.09

    timer = threading.Timer(0.1, publisher.publish, args=(1, make_entries(1, 3)))
    timer.start()
    try:
        assert reader.read(0, block_ms=5000, count=10) == make_entries(1, 3)
    finally:
        timer.join()


def test_missing_stream_when_caught_up_is_not_an_error(reader: RedisEventReader) -> None:
    assert reader.read(1234, block_ms=0, count=10) == []
    assert reader.first_last_positions() is None


def test_trimmed_position_is_reported(redis: Redis, cluster: str, reader: RedisEventReader) -> None:
    set_fence(redis, cluster, 1)
    publisher = RedisEventPublisher(redis, cluster, maxlen=1000)
    for first in range(1, 20_001, 100):
        publisher.publish(1, make_entries(first, 100, size=8))
    first, last = reader.first_last_positions()  # type: ignore[misc]
    assert last == 20_000
    assert 1 < first <= 20_000 - 1000 + 1  # at least maxlen positions kept
    with pytest.raises(TrimmedError) as trimmed:
        reader.read(0, block_ms=0, count=10)
    assert (trimmed.value.needed, trimmed.value.first_available) == (1, first)
    assert "catch up from an archive" in str(trimmed.value)
    # Positions still on the stream read fine.
    assert reader.read(first - 1, block_ms=0, count=1)[0].position == first


def test_the_window_in_time_keeps_what_was_published_within_it(
    redis: Redis, cluster: str, reader: RedisEventReader
) -> None:
    """NODE_STREAM_WINDOW_S: the stream keeps the last window_s seconds at any rate, up to
    maxlen positions (a fake clock: 100 positions a second, then 1,000 a second)."""
    set_fence(redis, cluster, 1)
    now = [0.0]
    publisher = RedisEventPublisher(redis, cluster, maxlen=25_000, window_s=10.0, clock=lambda: now[0])
    position = 1
    for rate in (100, 1000):
        for _ in range(300):  # 30 s at this rate, a batch every 0.1 s
            publisher.publish(1, make_entries(position, rate // 10, size=8))
            position += rate // 10
            now[0] += 0.1
        first, last = reader.first_last_positions()  # type: ignore[misc]
        assert last == position - 1
        # The last 10 s are there; older entries are gone, give or take what MINID ~
        # leaves (whole radix-tree nodes: up to 100 entries, here 10 s more).
        assert reader.read(last - 10 * rate, block_ms=0, count=1)[0].position == last - 10 * rate + 1
        assert first > last - 21 * rate
    # Faster (10,000 a second for 10 s): the window never keeps more than maxlen positions.
    for _ in range(1000):
        publisher.publish(1, make_entries(position, 100, size=8))
        position += 100
        now[0] += 0.01
    first, last = reader.first_last_positions()  # type: ignore[misc]
    assert 25_000 <= last - first + 1 <= 25_000 + 100 * 100
    with pytest.raises(TrimmedError):
        reader.read(last - 40_000, block_ms=0, count=1)
    # A new publisher on the same stream (a leader's role restarted in its term) trims
    # nothing by the window until a window has passed since it started (only by maxlen).
    again = RedisEventPublisher(redis, cluster, maxlen=25_000, window_s=10.0, clock=lambda: now[0])
    for _ in range(50):
        again.publish(1, make_entries(position, 10, size=8))
        position += 10
        now[0] += 0.1
    first, last = reader.first_last_positions()  # type: ignore[misc]
    assert first < last - 20_000  # still about maxlen, not only what the new one published


def test_a_hole_in_the_stream_is_never_skipped(
    publisher: RedisEventPublisher, reader: RedisEventReader
) -> None:
    publisher.publish(1, make_entries(1, 10))
    publisher.publish(1, make_entries(21, 10))  # 11..20 never published
    assert reader.read(0, block_ms=0, count=10) == make_entries(1, 10)
    with pytest.raises(TrimmedError) as trimmed:
        reader.read(10, block_ms=0, count=10)
    assert (trimmed.value.needed, trimmed.value.first_available) == (11, 21)


def test_stream_lost_while_behind_then_republished_is_detected(
    redis: Redis, cluster: str, publisher: RedisEventPublisher, reader: RedisEventReader
) -> None:
    publisher.publish(1, make_entries(1, 10))
    redis.delete(keys(cluster).events)  # Redis flushed
    publisher.publish(1, make_entries(31, 10))
    with pytest.raises(TrimmedError):
        reader.read(5, block_ms=0, count=10)


def test_reader_refuses_a_decoding_client(cluster: str) -> None:
    from tests.archive.conftest import REDIS_URL

    client = Redis.from_url(REDIS_URL, decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses=False"):
        RedisEventReader(client, keys(cluster).events)
    client.close()
