from __future__ import annotations

import pytest

from archive import PostgresEventLog, PostgresSnapshotStore, RetentionError
from tests.archive.conftest import make_entries
from tests.archive.test_event_log import read_all


def test_retention_needs_a_snapshot(log: PostgresEventLog) -> None:
    log.append(make_entries(1, 100))
    with pytest.raises(RetentionError, match="no snapshot"):
        log.delete_before(50, keep_from_bound=100)
    assert len(read_all(log)) == 100


def test_retention_refuses_past_the_latest_snapshot(
    log: PostgresEventLog, snapshots: PostgresSnapshotStore
) -> None:
    log.append(make_entries(1, 100))
    snapshots.save(40, 1, "d", b"s")
    with pytest.raises(RetentionError, match="latest snapshot is at 40"):
        log.delete_before(41, keep_from_bound=100)
    assert len(read_all(log)) == 100


def test_retention_refuses_past_the_lowest_needed_position(
    log: PostgresEventLog, snapshots: PostgresSnapshotStore
) -> None:
    log.append(make_entries(1, 100))
    snapshots.save(80, 1, "d", b"s")
    with pytest.raises(RetentionError, match="position 30 is still needed"):
        log.delete_before(50, keep_from_bound=30)
    assert len(read_all(log)) == 100


def test_retention_deletes_below_the_bounds(
    log: PostgresEventLog, snapshots: PostgresSnapshotStore
) -> None:
    entries = make_entries(1, 100)
    log.append(entries)
    snapshots.save(80, 1, "d", b"s")
    assert log.delete_before(60, keep_from_bound=70) == 59
    assert read_all(log) == entries[59:]
    assert log.tail() == (100, 1)
    assert log.term_at(59) is None
    assert log.delete_before(60, keep_from_bound=70) == 0


def test_truncation_drops_snapshots_past_the_cut(
    log: PostgresEventLog, snapshots: PostgresSnapshotStore
) -> None:
    log.append(make_entries(1, 100))
    snapshots.save(50, 1, "d50", b"s")
    snapshots.save(90, 1, "d90", b"s")
    log.truncate_after(70)
    assert [i.position for i in snapshots.list()] == [50]


def test_size_counts_the_positions_held_and_the_bytes(
    log: PostgresEventLog, snapshots: PostgresSnapshotStore
) -> None:
    empty = log.size()
    assert (empty.first, empty.last, empty.events) == (0, 0, 0)
    log.append(make_entries(1, 100))
    snapshots.save(80, 1, "d", b"s")
    log.delete_before(60, keep_from_bound=100)
    size = log.size()
    assert (size.first, size.last, size.events) == (60, 100, 41)
    assert size.bytes > empty.bytes > 0
