"""The archive: a node's event log and snapshots on PostgreSQL, fenced publishing on Redis streams."""

from archive.deadletter import DeadLetters, dead_letter_counts
from archive.entries import LogEntry, LogSize, Snapshot, SnapshotInfo
from archive.errors import (
    ArchiveError,
    ArchiveUnavailableError,
    CorruptEntryError,
    FencedError,
    LogGapError,
    RangeUnavailableError,
    RetentionError,
    SnapshotConflictError,
    StaleEntryError,
    TermRegressionError,
    TrimmedError,
)
from archive.fence import get_fence, lower_fence, set_fence
from archive.fenced import FencedWrites
from archive.pglog import PostgresEventLog
from archive.pgsnapshots import PostgresSnapshotStore
from archive.ports import EventLog, EventPublisher, EventReader, SnapshotStore
from archive.publisher import RedisEventPublisher
from archive.reader import RedisEventReader
from archive.replay import delete_replay, publish_replay
from archive.schema import create_archive

__all__ = [
    "ArchiveError",
    "ArchiveUnavailableError",
    "CorruptEntryError",
    "DeadLetters",
    "EventLog",
    "EventPublisher",
    "EventReader",
    "FencedError",
    "FencedWrites",
    "LogEntry",
    "LogGapError",
    "LogSize",
    "PostgresEventLog",
    "PostgresSnapshotStore",
    "RangeUnavailableError",
    "RedisEventPublisher",
    "RedisEventReader",
    "RetentionError",
    "Snapshot",
    "SnapshotConflictError",
    "SnapshotInfo",
    "SnapshotStore",
    "StaleEntryError",
    "TermRegressionError",
    "TrimmedError",
    "create_archive",
    "dead_letter_counts",
    "delete_replay",
    "get_fence",
    "lower_fence",
    "publish_replay",
    "set_fence",
]
