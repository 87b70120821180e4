"""The drill's checker catches what it claims to: each broken rule, on real archives.

A small history and three archives are built from a real engine's events (so the
digests and the idempotency keys are the genuine ones), then broken one way at a time:
a committed answer missing from the final leader's log, a command executed twice, a
follower that differs below the commit point, a term that goes back. A checker that
found nothing here would prove nothing in the drill.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from archive import LogEntry, PostgresEventLog, create_archive
from archive.streamformat import encode_events as encode_segment
from controlplane.drill import checker
from controlplane.drill.history import payload_digest
from nodes.engine import AddInstrument, Engine, PlaceOrder, encode_events, event_kind

NODES = ("n1", "n2", "n3")
ADMIN_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def drop_database(dbname: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


def engine_log(commands: list, term: int = 1, first_position: int = 1, engine: Engine | None = None):
    """Log entries and (command, first position, payloads) answers from a real engine."""
    engine = engine or Engine()
    entries, answers = [], []
    for command in commands:
        command.timestamp = 1_800_000_000_000_000_000 + command.client_seq
        start = engine.position + 1
        events = engine.process(command)
        payloads = encode_events(events)
        entries += [LogEntry(start + i, term, event_kind(e), command.timestamp, p)
                    for i, (e, p) in enumerate(zip(events, payloads, strict=True))]  # fmt: skip
        answers.append((command, start, payloads))
    assert entries[0].position == first_position
    return entries, answers, engine


def orders(first_seq: int, count: int, client: str = "c1") -> list:
    return [PlaceOrder(client_id=client, client_seq=seq, account=f"a{seq % 3}", symbol="S",
                       side=1 + seq % 2, qty=1 + seq % 4, price=100 + seq % 5 - 2)
            for seq in range(first_seq, first_seq + count)]  # fmt: skip


@pytest.fixture(scope="module")
def archive_databases() -> Iterator[dict[str, str]]:
    names = {node: f"tec_test_drill_{uuid.uuid4().hex[:8]}" for node in NODES}
    locations = {node: make_conninfo(ADMIN_URL, dbname=dbname) for node, dbname in names.items()}
    for location in locations.values():
        create_archive(location)
    yield locations
    for dbname in names.values():
        drop_database(dbname)


@pytest.fixture
def archives(archive_databases: dict[str, str]) -> dict[str, str]:
    """Three empty archives (emptied again for every test: creating databases is slow)."""
    for location in archive_databases.values():
        with psycopg.connect(location, autocommit=True) as conn:
            conn.execute("TRUNCATE archive_segment")
    return archive_databases


@pytest.fixture
def write(tmp_path: Path, archives: dict[str, str]) -> Callable[..., Path]:
    """Write the archives and a history of the given answers; returns the history's path."""

    def write(logs: dict[str, list], answers: list, leader: str = "n1", role_changes=None) -> Path:
        for node, entries in logs.items():
            with PostgresEventLog(archives[node]) as log:
                if entries:
                    _raw_append(archives[node], entries)
                log.refresh_tail()
        history = tmp_path / "history.jsonl"
        records = [{"type": "meta", "cluster": "t", "seed": 1, "archives": archives, "at": 1.0}]
        for command, first, payloads in answers:
            records.append({"type": "sent", "client": command.client_id, "seq": command.client_seq,
                            "kind": "place_order", "attempt": 1, "entry": "1-0", "at": 2.0})  # fmt: skip
            records.append({"type": "committed", "client": command.client_id, "seq": command.client_seq,
                            "position": first, "count": len(payloads), "digest": payload_digest(payloads),
                            "duplicate": False, "sent_at": 2.0, "at": 3.0})  # fmt: skip
        terms = sorted({entry.term for entries in logs.values() for entry in entries})
        changes = role_changes if role_changes is not None else [{"term": t, "new_leader": leader} for t in terms]
        records.append({"type": "final", "leader": leader, "term": max(terms), "role_changes": changes,
                        "leader_claims": [{"node": leader, "term": t} for t in terms], "at": 4.0})  # fmt: skip
        history.write_text("\n".join(json.dumps(record) for record in records) + "\n")
        return history

    return write


def _raw_append(location: str, entries: list) -> None:
    """Insert entries as they are, even ones the archive's own checks would refuse: a
    segment of one event each (gaps and terms going back included)."""
    insert = "INSERT INTO archive_segment (first_position, last_position, term, events) VALUES (%s, %s, %s, %b)"
    with psycopg.connect(location, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(insert, [(e.position, e.position, e.term, encode_segment([e])) for e in entries])


def base() -> tuple[list, list]:
    entries, answers, _ = engine_log([AddInstrument(client_id="c0", client_seq=1, symbol="S"), *orders(1, 30)])
    return entries, answers


def test_a_clean_history_passes(write) -> None:
    entries, answers = base()
    result = checker.check(write({node: entries for node in NODES}, answers))
    assert result.ok, result.violations
    assert result.commands["committed"] == 31
    assert len({summary.digest for summary in result.archives}) == 1


def test_a_committed_answer_missing_from_the_final_leader_is_lost(write) -> None:
    entries, answers = base()
    result = checker.check(write({"n1": entries[:-3], "n2": entries, "n3": entries}, answers))
    assert result.counts.get(checker.COMMITTED_RESULTS_SURVIVE), result.violations
    assert any("LOST" in v.detail for v in result.violations)


def test_other_events_at_a_committed_position_are_a_loss(write) -> None:
    entries, answers = base()
    # The final leader's log ends with another term's batch where the committed one was.
    rewritten, _, _ = engine_log([AddInstrument(client_id="c0", client_seq=1, symbol="S"), *orders(1, 25), *orders(100, 8, "c2")])
    tail = [entry._replace(term=2) for entry in rewritten[len(entries) - 8 :]]
    leader_log = rewritten[: len(entries) - 8] + tail
    result = checker.check(write({"n1": leader_log, "n2": leader_log, "n3": leader_log}, answers))
    assert result.counts.get(checker.COMMITTED_RESULTS_SURVIVE), result.violations


def test_a_command_executed_twice_is_found(write) -> None:
    entries, answers = base()
    # Command c1#5's events once more at the end: a leader that lost the dedup state.
    again = [entry for entry in entries if entry.payload in answers[5][2]]
    log = entries + [entry._replace(position=len(entries) + 1 + i) for i, entry in enumerate(again)]
    result = checker.check(write({node: log for node in NODES}, answers))
    assert result.counts.get(checker.COMMANDS_EXECUTE_ONCE), result.violations
    assert "c1#5 executed 2 times" in " ".join(v.detail for v in result.violations)


def test_a_follower_that_differs_below_the_commit_point_is_found(write) -> None:
    entries, answers = base()
    other, _, _ = engine_log([AddInstrument(client_id="c0", client_seq=1, symbol="S"), *orders(1, 10), *orders(200, 20, "c3")])
    result = checker.check(write({"n1": entries, "n2": entries, "n3": other[: len(entries)]}, answers))
    assert result.counts.get(checker.LOGS_ARE_PREFIXES), result.violations
    assert result.counts.get(checker.EQUAL_STATE_DIGESTS), result.violations


def test_terms_going_back_and_unelected_terms_are_found(write) -> None:
    entries, answers = base()
    log = [entry._replace(term=3 if entry.position < 10 else 2) for entry in entries]
    result = checker.check(write({node: log for node in NODES}, answers, role_changes=[{"term": 3, "new_leader": "n1"}]))
    assert result.counts.get(checker.TERMS_NEVER_DECREASE), result.violations
    assert result.counts.get(checker.ONE_LEADER_PER_TERM), result.violations


def test_a_fault_after_which_nothing_commits_is_a_wedge(write, tmp_path: Path) -> None:
    entries, answers = base()
    history = write({node: entries for node in NODES}, answers)
    with history.open("a") as out:
        out.write(json.dumps({"type": "fault", "index": 0, "kind": "kill", "variant": "kill leader", "target": "n1",
                              "detail": "", "at": 5.0, "end": 5.0}) + "\n")  # fmt: skip
        out.write(json.dumps({"type": "sent", "client": "c1", "seq": 999, "kind": "place_order", "attempt": 1, "at": 6.0}) + "\n")
    result = checker.check(history)
    assert result.counts.get(checker.RECOVERS), result.violations
