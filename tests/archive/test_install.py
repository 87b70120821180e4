"""What a snapshot install needs from the archive: a new identity, and a log that starts late."""

from __future__ import annotations

import pytest

from archive import LogGapError, PostgresEventLog, PostgresSnapshotStore, TermRegressionError
from tests.archive.conftest import make_entries
from tests.archive.test_event_log import read_all


def test_renew_empties_the_archive_under_a_new_id(
    log: PostgresEventLog, snapshots: PostgresSnapshotStore
) -> None:
    log.append(make_entries(1, 50))
    snapshots.save(40, 1, "d", b"s")
    log.truncate_after(45)
    old_id = log.archive_id()
    new_id = log.renew()
    assert new_id != old_id
    assert log.archive_id() == new_id
    assert log.tail() == (0, 0)
    assert log.refresh_tail() == (0, 0)
    assert snapshots.list() == []
    assert log.truncations() == 0


def test_a_log_starts_at_a_snapshot_position_and_grows_from_there(log: PostgresEventLog) -> None:
    entries = make_entries(1000, 10, term=3)
    log.start_at(entries[:4])
    assert log.tail() == (1003, 3)
    log.append(entries[4:])
    assert read_all(log) == entries
    assert log.term_at(999) is None
    with PostgresEventLog(log._location) as other:
        assert other.tail() == (1009, 3)
        other.append(make_entries(1010, 1, term=4))


def test_start_at_refuses_a_log_that_is_not_empty(log: PostgresEventLog) -> None:
    log.append(make_entries(1, 5))
    with pytest.raises(LogGapError, match="not empty"):
        log.start_at(make_entries(100, 5))
    assert log.refresh_tail() == (5, 1)


def test_start_at_checks_the_batch_like_append(log: PostgresEventLog) -> None:
    with pytest.raises(LogGapError, match="not contiguous"):
        log.start_at(make_entries(10, 2) + make_entries(20, 1))
    with pytest.raises(TermRegressionError):
        log.start_at(make_entries(10, 2, term=3) + make_entries(12, 1, term=2))
    assert log.refresh_tail() == (0, 0)
