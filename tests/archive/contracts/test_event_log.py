"""The EventLog port's contract (archive.ports.EventLog), as the eventsourcing library
does it: one abstract class states what every adapter must do; each adapter runs it by
subclassing it with a factory. Real databases only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from archive import (
    LogEntry,
    LogGapError,
    PostgresEventLog,
    PostgresSnapshotStore,
    RetentionError,
    TermRegressionError,
)
from archive.ports import EventLog, SnapshotStore
from tests.archive.conftest import make_entries


def read_all(log: EventLog, start: int = 1, end: int | None = None) -> list[LogEntry]:
    return [entry for batch in log.read(start, end) for entry in batch]


class EventLogContract:
    """Subclasses provide ``stores``: a new, empty archive's log and snapshot store."""

    @pytest.fixture
    def stores(self) -> Iterator[tuple[EventLog, SnapshotStore]]:
        raise NotImplementedError

    @pytest.fixture
    def log(self, stores) -> EventLog:
        return stores[0]

    def test_an_empty_log(self, log: EventLog) -> None:
        assert log.tail() == log.refresh_tail() == (0, 0)
        assert read_all(log) == []
        assert log.term_at(1) is None
        assert (log.size().first, log.size().last) == (0, 0)

    def test_appended_batches_read_back_in_order(self, log: EventLog) -> None:
        entries = make_entries(1, 30, term=1) + make_entries(31, 20, term=2)
        log.append(entries[:30])
        log.append(entries[30:])
        assert log.tail() == log.refresh_tail() == (50, 2)
        assert read_all(log) == entries
        assert read_all(log, 10, 35) == entries[9:35]
        assert (log.term_at(30), log.term_at(31), log.term_at(51)) == (1, 2, None)
        assert (log.size().first, log.size().last) == (1, 50)

    @pytest.mark.parametrize(
        "batch",
        [
            make_entries(12, 3),  # a gap after the tail
            make_entries(11, 3)[:1] + make_entries(13, 1),  # not contiguous
            make_entries(5, 3),  # overlaps: appending the same batch twice is a gap error
        ],
    )
    def test_a_batch_that_does_not_continue_the_log_is_refused_whole(self, log, batch) -> None:
        log.append(make_entries(1, 10))
        with pytest.raises(LogGapError):
            log.append(batch)
        assert log.refresh_tail() == (10, 1)
        assert read_all(log) == make_entries(1, 10)

    def test_terms_never_decrease(self, log: EventLog) -> None:
        log.append(make_entries(1, 10, term=3))
        with pytest.raises(TermRegressionError):
            log.append(make_entries(11, 2, term=2))
        with pytest.raises(TermRegressionError):
            log.append(make_entries(11, 1, term=4) + make_entries(12, 1, term=3))
        assert log.refresh_tail() == (10, 3)

    def test_truncate_after_drops_the_tail_and_is_idempotent(self, log: EventLog) -> None:
        log.append(make_entries(1, 20))
        before = log.truncations()
        assert log.truncate_after(15) == 5
        assert log.truncate_after(15) == 0
        assert log.tail() == (15, 1)
        assert read_all(log) == make_entries(1, 15)
        assert log.truncations() == before + 1
        log.append(make_entries(16, 3, term=2))  # the log goes on after the cut
        assert log.tail() == (18, 2)

    def test_retention_needs_a_snapshot_and_the_followers(self, stores) -> None:
        log, snapshots = stores
        log.append(make_entries(1, 100))
        with pytest.raises(RetentionError, match="no snapshot"):
            log.delete_before(50, keep_from_bound=100)
        snapshots.save(60, 1, "d60", b"state")
        with pytest.raises(RetentionError):
            log.delete_before(70, keep_from_bound=100)  # above the snapshot
        with pytest.raises(RetentionError):
            log.delete_before(50, keep_from_bound=40)  # a follower still needs 40
        assert read_all(log) == make_entries(1, 100)  # refusals delete nothing
        assert log.delete_before(50, keep_from_bound=50) == 49
        assert read_all(log) == make_entries(50, 51)
        assert (log.size().first, log.size().last) == (50, 100)
        assert log.term_at(49) is None

    def test_space_of_deleted_entries_is_reused_after_reclaim(self, stores) -> None:
        """Retention for months: appending as much as is deleted, with a reclaim after each
        cut, keeps the archive near the size of what it holds (without the reclaim, on a
        server with autovacuum off, it grows by every segment ever written)."""
        log, snapshots = stores
        payload = b"x" * 60  # segments of 50 such events are stored out of line (TOAST)
        position, held = 0, 20_000

        def fill(count: int) -> None:
            nonlocal position
            for _ in range(count // 50):
                log.append([LogEntry(position + i + 1, 1, 1, 0, payload) for i in range(50)])
                position += 50

        fill(held)
        sizes = []
        for _ in range(6):
            fill(held // 2)
            snapshots.save(position, 1, f"d{position}", b"state")
            log.delete_before(position - held + 1, keep_from_bound=position)
            log.reclaim()
            sizes.append(log.size().bytes)
        assert log.size().first == position - held + 1
        # Six cuts wrote 3x what is held: grown files would be about 2.5x the first size.
        assert sizes[-1] < 1.3 * sizes[0], sizes

    def test_an_empty_log_can_start_at_a_snapshot_position(self, log: EventLog) -> None:
        log.start_at(make_entries(500, 1, term=4))
        assert log.tail() == (500, 4)
        log.append(make_entries(501, 2, term=4))
        assert read_all(log, 500) == make_entries(500, 1, term=4) + make_entries(501, 2, term=4)
        with pytest.raises(LogGapError):
            log.start_at(make_entries(900, 1, term=4))
        assert log.tail() == (502, 4)

    def test_renew_empties_the_archive_under_a_new_identity(self, stores) -> None:
        log, snapshots = stores
        log.append(make_entries(1, 10))
        snapshots.save(10, 1, "d10", b"state")
        old_id = log.archive_id()
        new_id = log.renew()
        assert new_id == log.archive_id() != old_id
        assert log.refresh_tail() == (0, 0)
        assert read_all(log) == []
        assert snapshots.latest() is None

    def test_each_boot_counts_higher_than_the_last(self, log: EventLog) -> None:
        first = log.count_boot()
        assert log.count_boot() > first > 0

    def test_close_is_idempotent(self, log: EventLog) -> None:
        log.close()
        log.close()


class TestPostgresEventLog(EventLogContract):
    @pytest.fixture
    def stores(self, location: str) -> Iterator[tuple[EventLog, SnapshotStore]]:
        log, snapshots = PostgresEventLog(location), PostgresSnapshotStore(location)
        yield log, snapshots
        log.close()
        snapshots.close()
