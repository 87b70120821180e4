"""Value types the archive stores and hands out: log entries and snapshots."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple


class LogEntry(NamedTuple):
    """One event of the cluster's log; the payload is opaque bytes encoded by the engine."""

    position: int
    term: int
    kind: int
    timestamp: int  # the leader's clock, ns since the epoch
    payload: bytes


class Snapshot(NamedTuple):
    """The engine's state after applying every event up to and including `position`."""

    position: int
    term: int
    digest: str
    data: bytes
    created_at: datetime


class SnapshotInfo(NamedTuple):
    """A snapshot without its data, for listings."""

    position: int
    term: int
    digest: str
    size: int
    created_at: datetime


class LogSize(NamedTuple):
    """How much of the log an archive holds: positions first..last and its bytes on disk."""

    first: int  # 0 when the log is empty
    last: int
    bytes: int  # event log and snapshots, as the database stores them

    @property
    def events(self) -> int:
        return self.last - self.first + 1 if self.last else 0
