"""A node's retention thread deletes only what neither start-up, a member, nor a catch-up needs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from redis import Redis

from archive import PostgresEventLog, RedisEventReader, publish_replay
from nodes.adapters import Adapters
from nodes.context import Phase
from nodes.retention import Retention
from nodes.snapshotter import Snapshotter
from nodes.state import NodeState
from tests.archive.conftest import REDIS_URL, location  # noqa: F401 - a fresh archive per test
from tests.nodes.test_snapshotter import trade, wait_done
from wire.keys import keys


def context_with(floor: int | None, keep: int) -> SimpleNamespace:
    """What retention reads of its node's context (nodes/context.py RoleContext)."""
    return SimpleNamespace(
        view=SimpleNamespace(retention_floor=floor, keep_events=keep),
        name="n1",
        phase=lambda: Phase.LIVE,
        adapters=Adapters(),
    )


@pytest.fixture
def state(location: str):  # noqa: F811
    node_state = NodeState(location)
    node_state.recover()
    yield node_state
    node_state.close()


def snapshot_now(state: NodeState, location: str) -> int:  # noqa: F811
    snapshotter = Snapshotter(location)
    snapshotter.start(state.engine)
    done = wait_done(snapshotter, state)
    assert done.ok, done.status
    return done.position


def test_retention_keeps_what_members_catch_up_and_start_up_need(state: NodeState, location: str) -> None:  # noqa: F811
    trade(state, 8000)
    snapshot = snapshot_now(state, location)  # 8001
    trade(state, 2000, first_seq=8001)  # tail 10001
    digest = state.engine.digest()

    ctx = context_with(floor=5000, keep=1000)  # a live follower holds 5000: it reads 5001 on
    retention = Retention(ctx, location)
    retention.run_once()
    assert (retention.size.first, retention.size.last) == (5001, 10001)
    assert retention.snapshot_position == snapshot

    # The follower at 5000 catches up from this archive: its replay is all there.
    redis = Redis.from_url(REDIS_URL)
    cluster = "t_retention"
    try:
        with PostgresEventLog(location) as event_log:
            assert publish_replay(event_log, redis, cluster, "f1", 5001) == 5001
        reader = RedisEventReader(redis, keys(cluster).replay("f1"))
        assert reader.read(5000, block_ms=10, count=1)[0].position == 5001
    finally:
        redis.delete(keys(cluster).replay("f1"))
        redis.close()

    # Once every member is past the snapshot, the cut stops at the snapshot's own entry
    # and at the minimum window, whichever is lower.
    ctx.view = SimpleNamespace(retention_floor=10001, keep_events=1000)
    retention.run_once()
    assert retention.size.first == snapshot
    ctx.view = SimpleNamespace(retention_floor=10001, keep_events=100)
    retention.run_once()
    assert retention.size.first == snapshot  # never past the latest verified snapshot

    # Start-up still restores and replays to the same state.
    with_retention = NodeState(location)
    try:
        status = with_retention.recover()
        assert f"snapshot at {snapshot}" in status
        assert with_retention.engine.digest() == digest
    finally:
        with_retention.close()


def test_no_verified_snapshot_or_no_live_member_deletes_nothing(state: NodeState, location: str) -> None:  # noqa: F811
    trade(state, 3000)
    retention = Retention(context_with(floor=3000, keep=0), location)
    retention.run_once()
    assert retention.size.first == 1  # no snapshot yet
    snapshot_now(state, location)
    retention = Retention(context_with(floor=None, keep=0), location)
    retention.run_once()
    assert retention.size.first == 1  # no live member known
    retention._close()
