"""A node whose latest snapshot is of an older format (version 1: a running hash made
with Python's ``hash()``) does not use it: it replays its log from the start, or, when
retention has cut the log, says it needs a snapshot installed (the runtime renews its
archive and installs a peer's)."""

from __future__ import annotations

import pytest

from bench.engine import generate
from nodes.engine import Engine
from nodes.engine.snapshot import SNAPSHOT_MAGIC
from nodes.state import ArchiveNeedsSnapshot, NodeState


def archived_engine(location: str) -> tuple[NodeState, Engine]:
    state = NodeState(location)
    engine = Engine()
    events = []
    for command in generate(400, 4):
        events.extend(engine.process(command))
    state.append(state.entries_for(events, term=1, timestamp=1, first=1))
    data = engine.snapshot()
    old = SNAPSHOT_MAGIC + b"\x01" + data[len(SNAPSHOT_MAGIC) + 1 :]
    state.snapshots.save(engine.position, 1, Engine.snapshot_digest(old), old)
    return state, engine


def test_recovery_replays_the_log_instead_of_a_version_1_snapshot(location: str) -> None:
    state, engine = archived_engine(location)
    state.close()
    fresh = NodeState(location)
    try:
        status = fresh.recover()
        assert f"snapshot at 0, replayed {engine.position} events" in status
        assert fresh.engine.digest() == engine.digest()
        assert fresh.engine.running_hash == engine.running_hash
    finally:
        fresh.close()


def test_recovery_needs_a_snapshot_when_the_log_before_it_is_gone(location: str) -> None:
    state, engine = archived_engine(location)
    state.log.delete_before(engine.position - 10, keep_from_bound=engine.position - 10)
    state.close()
    fresh = NodeState(location)
    try:
        with pytest.raises(ArchiveNeedsSnapshot, match="cannot be replayed"):
            fresh.recover()
    finally:
        fresh.close()
