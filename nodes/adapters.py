"""The node's adapters, made in one place: the runtime asks for them, it never names their classes.

The node runtime is written against the archive's ports (archive/ports.py) and a few Redis
helpers. `Adapters` makes each of them; the composition root (the worker bootstep,
nodes/worker.py) builds one and hands it to the Node, which hands it on to its roles
(nodes/context.py RoleContext), retention, the peer service, installs and the snapshot
children. Another set of adapters (a test's) is another `Adapters`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from redis import Redis

from archive import (
    DeadLetters,
    EventLog,
    EventPublisher,
    FencedWrites,
    PostgresEventLog,
    PostgresSnapshotStore,
    RedisEventPublisher,
    RedisEventReader,
    SnapshotStore,
    create_archive,
)
from wire.redisconn import DirectConnection


@dataclass(frozen=True)
class Adapters:
    """PostgreSQL archives and the cluster's Redis. Each call makes a new adapter, with
    connections of its own: an adapter is used from one thread (the Redis client passed
    in is the node's shared one)."""

    def open_archive(self, location: str) -> tuple[EventLog, SnapshotStore]:
        """The event log and snapshot store of the archive at `location`, created first if
        it is missing (safe from several processes at once)."""
        create_archive(location)
        return self.event_log(location), self.snapshot_store(location)

    def event_log(self, location: str) -> EventLog:
        """The event log of an archive that exists."""
        return PostgresEventLog(location)

    def snapshot_store(self, location: str) -> SnapshotStore:
        """The snapshot store of an archive that exists."""
        return PostgresSnapshotStore(location)

    def publisher(
        self, redis: Redis, cluster: str, *, stream_key: str, maxlen: int, window_s: float, line: DirectConnection
    ) -> EventPublisher:
        """The fenced publisher of a leader's term on `stream_key`, writing on `line`."""
        return RedisEventPublisher(redis, cluster, maxlen=maxlen, window_s=window_s, stream_key=stream_key, line=line)

    def event_reader(
        self,
        redis: Redis,
        stream_key: str,
        *,
        line: DirectConnection | None = None,
        keys: Callable[[], Mapping[str, bytes] | None] | None = None,
    ) -> RedisEventReader:
        """A reader of a live or replay stream (entries checked against `keys()` when it
        gives any). The Redis adapter itself, not the EventReader port: the follower sends
        its reads pipelined with its acks (read_command/entries) and sets aside what the
        reader rejected, which the port does not offer."""
        return RedisEventReader(redis, stream_key, line=line, keys=keys)

    def fenced_writes(self, redis: Redis, cluster: str) -> FencedWrites:
        """A leader's fenced deliveries and a follower's fenced acks."""
        return FencedWrites(redis, cluster)

    def dead_letters(self, redis: Redis, cluster: str, node: str) -> DeadLetters:
        """Where `node` sets aside the entries it could not take."""
        return DeadLetters(redis, cluster, node)

    def line(self, redis: Redis, tally: object | None = None) -> DirectConnection:
        """A Redis connection of its own for one thread's hot loop; `tally` (the node's
        LoopStats) counts its round trips."""
        return DirectConnection(redis, tally)
