"""Snapshots in a forked child: the loop only forks, the child stores what the engine was at the fork."""

from __future__ import annotations

import os
import time

import pytest

from archive import PostgresSnapshotStore
from nodes.engine import AddInstrument, Engine, PlaceOrder
from nodes.snapshotter import Snapshotter, verified
from nodes.state import NodeState
from tests.archive.conftest import location  # noqa: F401 - a fresh archive per test


def trade(state: NodeState, count: int, first_seq: int = 1) -> None:
    """Process `count` resting orders on the leader's path: handle+apply, then archive."""
    engine = state.engine
    events, first = [], engine.position + 1
    if engine.position == 0:
        events += engine.process(AddInstrument("ops", 1, "ACME", tick_size=1, lot_size=1))
    for seq in range(first_seq, first_seq + count):
        side = 1 + seq % 2
        price = 1000 - 1 - seq % 50 if side == 1 else 1000 + 1 + seq % 50
        events += engine.process(PlaceOrder("c", seq, "acct", "ACME", side, 1 + seq % 5, price, timestamp=seq))
    state.append(state.entries_for(events, 1, 1, first))


def wait_done(snapshotter: Snapshotter, state: NodeState, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = snapshotter.poll(state.engine, state.archived)
        if done is not None:
            return done
        time.sleep(0.01)
    raise AssertionError("the snapshot child did not finish")


@pytest.fixture
def state(location: str):  # noqa: F811
    node_state = NodeState(location)
    node_state.recover()
    yield node_state
    node_state.close()


def test_a_forked_child_stores_the_state_of_the_fork_while_the_parent_goes_on(state: NodeState, location: str) -> None:  # noqa: F811
    trade(state, 2000)
    at_fork = (state.engine.position, state.engine.digest())
    snapshotter = Snapshotter(location)
    status = snapshotter.start(state.engine)
    child = snapshotter.job.pid
    assert child != os.getpid()
    assert "started in process" in status
    # The parent keeps trading meanwhile: its changes do not reach the child's copy.
    trade(state, 500, first_seq=2001)
    done = wait_done(snapshotter, state)
    assert done.ok, done.status
    assert done.position == at_fork[0]
    with PostgresSnapshotStore(location) as store:
        stored = store.latest()
    assert stored.position == at_fork[0]
    assert stored.term == 1
    assert verified(stored.data, stored.digest)
    assert Engine.restore(stored.data).digest() == at_fork[1]
    with pytest.raises(ChildProcessError):
        os.waitpid(child, os.WNOHANG)  # reaped: no zombie left behind


def test_the_child_stores_only_once_the_archive_holds_its_position(state: NodeState, location: str) -> None:  # noqa: F811
    trade(state, 100)
    first = state.engine.position + 1
    events = state.engine.process(PlaceOrder("c", 101, "acct", "ACME", 1, 1, 900, timestamp=101))
    snapshotter = Snapshotter(location)
    snapshotter.start(state.engine)  # a leader forks before its archive thread wrote the batch
    for _ in range(20):
        assert snapshotter.poll(state.engine, state.archived) is None  # told nothing: it waits
        time.sleep(0.01)
    with PostgresSnapshotStore(location) as store:
        assert store.latest() is None
    state.append(state.entries_for(events, 1, 1, first))
    done = wait_done(snapshotter, state)
    assert done.ok, done.status
    assert done.position == state.archived


def test_a_rebuilt_engine_abandons_the_snapshot(state: NodeState, location: str) -> None:  # noqa: F811
    trade(state, 100)
    snapshotter = Snapshotter(location)
    snapshotter.start(state.engine)
    state.recover()  # the node rebuilt its state from the archive: another engine
    done = wait_done(snapshotter, state)
    assert not done.ok
    assert "abandoned" in done.status
    with PostgresSnapshotStore(location) as store:
        assert store.latest() is None
