from __future__ import annotations

import threading
import time

import psycopg
import pytest

from archive import ArchiveUnavailableError, PostgresEventLog
from tests.archive.conftest import ADMIN_URL, make_entries
from tests.archive.test_event_log import read_all


def kill_backend_during_append(dbname: str, stop: threading.Event, killed: list[int]) -> None:
    """Terminate the backend that runs an append into `dbname` as soon as one is seen."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        while not stop.is_set():
            row = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND query LIKE '%%archive_append_segment%%' "
                "AND state = 'active'",
                (dbname,),
            ).fetchone()
            if row:
                time.sleep(0.05)  # let the server be part-way through it
                conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
                killed.append(row[0])
                return
            time.sleep(0.002)


def test_killed_connection_leaves_old_tail_or_new_never_between(
    log: PostgresEventLog, location: str
) -> None:
    before = make_entries(1, 1000)
    log.append(before)
    big = make_entries(1001, 300_000, size=200)
    dbname = psycopg.conninfo.conninfo_to_dict(location)["dbname"]
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=kill_backend_during_append, args=(dbname, stop, killed))
    killer.start()
    try:
        with pytest.raises(ArchiveUnavailableError, match="outcome unknown"):
            log.append(big)
    finally:
        stop.set()
        killer.join()
    assert killed, "the append was never seen in flight"

    with PostgresEventLog(location) as fresh:
        tail = fresh.tail()
        assert tail in {(1000, 1), (301_000, 1)}
        if tail == (1000, 1):
            assert read_all(fresh) == before
        else:
            assert read_all(fresh, 1, 1000) == before
    # The same instance reconnects, re-reads its tail and carries on.
    assert log.tail() == tail
    log.append(make_entries(tail[0] + 1, 10))
    assert log.tail() == (tail[0] + 10, 1)
