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
