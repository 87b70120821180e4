from __future__ import annotations

import pytest

from archive import (
    CorruptEntryError,
    LogEntry,
    LogGapError,
    PostgresEventLog,
    TermRegressionError,
)
from tests.archive.conftest import make_entries


def read_all(log: PostgresEventLog, start: int = 1, end: int | None = None) -> list[LogEntry]:
    return [entry for batch in log.read(start, end) for entry in batch]


def test_empty_log_has_tail_zero(log: PostgresEventLog) -> None:
    assert log.tail() == (0, 0)
    assert read_all(log) == []
    assert log.term_at(1) is None


def test_append_then_read_back_round_trips(log: PostgresEventLog) -> None:
    entries = make_entries(1, 2500, term=1) + make_entries(2501, 500, term=2)
    log.append(entries[:1000])
    log.append(entries[1000:])
    assert log.tail() == (3000, 2)
    assert read_all(log) == entries
    assert read_all(log, 2400, 2600) == entries[2399:2600]
    assert log.term_at(2500) == 1
    assert log.term_at(2501) == 2
    assert log.term_at(3001) is None


def test_read_streams_in_batches(log: PostgresEventLog) -> None:
    log.append(make_entries(1, 1200))
    sizes = [len(batch) for batch in log.read(1, batch_size=500)]
    assert sizes == [500, 500, 200]


def test_tail_is_read_from_the_database_by_a_new_instance(
    log: PostgresEventLog, location: str
) -> None:
    log.append(make_entries(1, 10, term=3))
    with PostgresEventLog(location) as other:
        assert other.tail() == (10, 3)


def test_truncate_after_deletes_the_suffix(log: PostgresEventLog) -> None:
    entries = make_entries(1, 100)
    log.append(entries)
    assert log.truncate_after(60) == 40
    assert log.tail() == (60, 1)
    assert log.truncate_after(60) == 0
    log.append(make_entries(61, 5, term=2))
    assert read_all(log) == entries[:60] + make_entries(61, 5, term=2)
    assert log.truncate_after(0) == 65
    assert log.tail() == (0, 0)


@pytest.mark.parametrize(
    ("batch", "error"),
    [
        pytest.param(make_entries(12, 5), LogGapError, id="gap"),
        pytest.param(make_entries(10, 5), LogGapError, id="overlap"),
        pytest.param(make_entries(1, 5), LogGapError, id="restart-at-one"),
        pytest.param(make_entries(11, 2) + make_entries(14, 2), LogGapError, id="hole-inside"),
        pytest.param(make_entries(11, 3) + make_entries(13, 1), LogGapError, id="dup-inside"),
        pytest.param(make_entries(11, 5, term=1), TermRegressionError, id="term-below-tail"),
        pytest.param(
            make_entries(11, 2, term=3) + make_entries(13, 2, term=2),
            TermRegressionError,
            id="term-backwards-inside",
        ),
        pytest.param(
            [*make_entries(11, 2, term=2), LogEntry(13, 2, 1, 0, b"")],
            CorruptEntryError,
            id="empty-payload",
        ),
        pytest.param(
            [*make_entries(11, 2, term=2), LogEntry(13, 2, 1, 0, "text")],  # type: ignore[arg-type]
            CorruptEntryError,
            id="str-payload",
        ),
        pytest.param(
            [*make_entries(11, 2, term=2), LogEntry(13, 2, 2**70, 0, b"x")],
            CorruptEntryError,
            id="kind-out-of-range",
        ),
        pytest.param(
            [*make_entries(11, 2, term=2), LogEntry(13, 2, 1, 0, None)],  # type: ignore[arg-type]
            CorruptEntryError,
            id="none-payload",
        ),
        pytest.param(
            [*make_entries(11, 2, term=2), (13, 2, 1)],  # type: ignore[list-item]
            CorruptEntryError,
            id="short-tuple",
        ),
        pytest.param(
            [*make_entries(11, 2, term=2), LogEntry(13, 2, 1, "now", b"x")],  # type: ignore[arg-type]
            CorruptEntryError,
            id="timestamp-not-int",
        ),
    ],
)
def test_a_refused_batch_writes_nothing(
    log: PostgresEventLog, location: str, batch: list[LogEntry], error: type[Exception]
) -> None:
    existing = make_entries(1, 10, term=2)
    log.append(existing)
    with pytest.raises(error):
        log.append(batch)
    assert log.tail() == (10, 2)
    with PostgresEventLog(location) as fresh:
        assert fresh.tail() == (10, 2)
        assert read_all(fresh) == existing
    # The log still takes the right batch afterwards.
    log.append(make_entries(11, 3, term=2))
    assert log.tail() == (13, 2)


def test_error_messages_say_what_was_expected(log: PostgresEventLog) -> None:
    log.append(make_entries(1, 10, term=2))
    with pytest.raises(LogGapError, match="starts at position 15 but the log's tail is 10"):
        log.append(make_entries(15, 1, term=2))
    with pytest.raises(TermRegressionError, match="term 1 is below the log's tail term 2"):
        log.append(make_entries(11, 1, term=1))


def test_truncation_by_another_process_is_noticed_on_the_next_append(
    log: PostgresEventLog, location: str
) -> None:
    log.append(make_entries(1, 20))
    with PostgresEventLog(location) as operator:
        operator.truncate_after(10)
    assert log.tail() == (20, 1)  # cached
    with pytest.raises(LogGapError, match="tail is 10"):
        log.append(make_entries(21, 5))
    assert log.tail() == (10, 1)
    log.append(make_entries(11, 5))
    assert read_all(log) == make_entries(1, 15)


def test_a_stale_cache_that_still_fits_is_accepted(log: PostgresEventLog, location: str) -> None:
    log.append(make_entries(1, 10))
    with PostgresEventLog(location) as other:
        other.append(make_entries(11, 5))
    # Our cache says 10; the batch 11.. is refused against the real tail 15.
    with pytest.raises(LogGapError):
        log.append(make_entries(11, 5))
    log.append(make_entries(16, 5))
    assert log.tail() == (20, 1)


def test_empty_batch_is_a_no_op(log: PostgresEventLog) -> None:
    log.append([])
    assert log.tail() == (0, 0)


def test_term_check_holds_against_a_log_rewritten_by_another_process(
    log: PostgresEventLog, location: str
) -> None:
    log.append(make_entries(1, 20, term=1))
    with PostgresEventLog(location) as other:
        other.truncate_after(10)
        other.append(make_entries(11, 10, term=3))
    # Our cache still says (20, 1): position 21 of term 1 fits it, not the real log.
    with pytest.raises(TermRegressionError, match="below the log's tail term 3"):
        log.append(make_entries(21, 5, term=1))
    assert log.tail() == (20, 3)
    assert [e.term for e in read_all(log)] == [1] * 10 + [3] * 10
