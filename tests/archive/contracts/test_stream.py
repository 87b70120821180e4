"""The EventPublisher and EventReader ports' contracts (archive.ports), on real Redis.

Each port has its own abstract class; an adapter pair runs both (a publisher's contract
is checked through a reader of its stream and the other way round)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from redis import Redis

from archive import (
    FencedError,
    LogEntry,
    RedisEventPublisher,
    RedisEventReader,
    StaleEntryError,
    TrimmedError,
    set_fence,
)
from archive.ports import EventPublisher, EventReader
from tests.archive.conftest import make_entries

Read = Callable[[int], list[LogEntry]]  # every entry after a position, as a reader sees it


def read_to_end(reader: EventReader, after: int) -> list[LogEntry]:
    got: list[LogEntry] = []
    while batch := reader.read(after, block_ms=0, count=3):
        got.extend(batch)
        after = batch[-1].position
    return got


class EventPublisherContract:
    """Subclasses provide ``publishing``: (publisher, read, fence) for a new cluster,
    where ``fence(term)`` moves the cluster's fence."""

    @pytest.fixture
    def publishing(self) -> Iterator[tuple[EventPublisher, Read, Callable[[int], None]]]:
        raise NotImplementedError

    def test_a_missing_fence_refuses_every_publish(self, publishing) -> None:
        publisher, read, _fence = publishing
        with pytest.raises(FencedError):
            publisher.publish(1, make_entries(1, 5))
        assert read(0) == []

    def test_published_batches_are_read_in_log_order(self, publishing) -> None:
        publisher, read, fence = publishing
        fence(1)
        entries = make_entries(1, 40, term=1)
        for first in range(0, 40, 8):
            publisher.publish(1, entries[first : first + 8])
        assert read(0) == entries
        assert read(17) == entries[17:]

    def test_a_fenced_term_writes_nothing(self, publishing) -> None:
        publisher, read, fence = publishing
        fence(1)
        publisher.publish(1, make_entries(1, 5, term=1))
        fence(2)
        with pytest.raises(FencedError):
            publisher.publish(1, make_entries(6, 5, term=1))
        assert read(0) == make_entries(1, 5, term=1)
        publisher.publish(2, make_entries(6, 5, term=2))
        assert read(5) == make_entries(6, 5, term=2)

    def test_publishing_a_batch_again_is_refused_never_duplicated(self, publishing) -> None:
        publisher, read, fence = publishing
        fence(1)
        publisher.publish(1, make_entries(1, 5))
        with pytest.raises(StaleEntryError):
            publisher.publish(1, make_entries(1, 5))
        assert read(0) == make_entries(1, 5)


class EventReaderContract:
    """Subclasses provide ``reading``: (reader, publish) on one stream, where
    ``publish(entries, maxlen)`` puts a batch on it keeping about maxlen positions."""

    @pytest.fixture
    def reading(self) -> Iterator[tuple[EventReader, Callable[[list[LogEntry], int], None]]]:
        raise NotImplementedError

    def test_a_missing_stream_reads_as_nothing_new(self, reading) -> None:
        reader, _publish = reading
        assert reader.read(0, block_ms=0, count=10) == []
        assert reader.first_last_positions() is None

    def test_reads_are_contiguous_from_the_position_asked(self, reading) -> None:
        reader, publish = reading
        entries = make_entries(1, 50)
        for first in range(0, 50, 10):
            publish(entries[first : first + 10], 0)
        assert reader.first_last_positions() == (1, 50)
        got = reader.read(23, block_ms=0, count=2)
        assert got
        assert got[0].position == 24
        assert [e.position for e in got] == list(range(24, 24 + len(got)))
        assert read_to_end(reader, 23) == entries[23:]
        assert reader.read(50, block_ms=0, count=10) == []

    def test_a_trimmed_position_is_an_error_not_a_skip(self, reading) -> None:
        reader, publish = reading
        for first in range(1, 3001, 100):
            publish(make_entries(first, 100), 500)
        first, last = reader.first_last_positions()
        assert first > 1
        assert last == 3000
        with pytest.raises(TrimmedError):
            reader.read(0, block_ms=0, count=10)
        assert read_to_end(reader, first - 1) == make_entries(first, 3000 - first + 1)


class TestRedisEventPublisher(EventPublisherContract):
    @pytest.fixture
    def publishing(self, redis: Redis, cluster: str):
        publisher = RedisEventPublisher(redis, cluster, maxlen=0)
        reader = RedisEventReader(redis, publisher.stream_key)
        return (
            publisher,
            lambda after: read_to_end(reader, after),
            lambda term: set_fence(redis, cluster, term),
        )


class TestRedisEventReader(EventReaderContract):
    @pytest.fixture
    def reading(self, redis: Redis, cluster: str):
        set_fence(redis, cluster, 1)
        publishers: dict[int, RedisEventPublisher] = {}

        def publish(entries: list[LogEntry], maxlen: int) -> None:
            if maxlen not in publishers:
                publishers[maxlen] = RedisEventPublisher(redis, cluster, maxlen=maxlen)
            publishers[maxlen].publish(1, entries)

        return RedisEventReader(redis, RedisEventPublisher(redis, cluster).stream_key), publish
