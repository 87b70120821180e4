"""The adapters a node is given (nodes/adapters.py) keep the archive's port contracts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis import Redis

import wire
from archive import LogEntry, set_fence
from archive.ports import EventLog, SnapshotStore
from nodes.adapters import Adapters
from tests.archive.conftest import cluster, location, redis  # noqa: F401 - fixtures
from tests.archive.contracts.test_event_log import EventLogContract
from tests.archive.contracts.test_snapshot_store import SnapshotStoreContract
from tests.archive.contracts.test_stream import (
    EventPublisherContract,
    EventReaderContract,
    read_to_end,
)

ADAPTERS = Adapters()


class TestEventLog(EventLogContract):
    @pytest.fixture
    def stores(self, location: str) -> Iterator[tuple[EventLog, SnapshotStore]]:  # noqa: F811
        log, snapshots = ADAPTERS.open_archive(location)
        yield log, snapshots
        log.close()
        snapshots.close()


class TestSnapshotStore(SnapshotStoreContract):
    @pytest.fixture
    def store(self, location: str) -> Iterator[SnapshotStore]:  # noqa: F811
        store = ADAPTERS.snapshot_store(location)
        yield store
        store.close()


class TestEventPublisher(EventPublisherContract):
    @pytest.fixture
    def publishing(self, redis: Redis, cluster: str):  # noqa: F811
        stream = wire.events_key(cluster, 1)  # a term's live stream, as a leader publishes it
        line = ADAPTERS.line(redis)
        publisher = ADAPTERS.publisher(redis, cluster, stream_key=stream, maxlen=0, window_s=0.0, line=line)
        reader = ADAPTERS.event_reader(redis, stream)
        yield publisher, (lambda after: read_to_end(reader, after)), (lambda term: set_fence(redis, cluster, term))
        line.close()


class TestEventReader(EventReaderContract):
    @pytest.fixture
    def reading(self, redis: Redis, cluster: str):  # noqa: F811
        stream = wire.events_key(cluster, 1)
        set_fence(redis, cluster, 1)
        line = ADAPTERS.line(redis)
        publishers = {}

        def publish(entries: list[LogEntry], maxlen: int) -> None:
            if maxlen not in publishers:
                publishers[maxlen] = ADAPTERS.publisher(
                    redis, cluster, stream_key=stream, maxlen=maxlen, window_s=0.0, line=line
                )
            publishers[maxlen].publish(1, entries)

        yield ADAPTERS.event_reader(redis, stream), publish
        line.close()
