from __future__ import annotations

import pytest

from archive import PostgresSnapshotStore, SnapshotConflictError


def test_no_snapshot_yet(snapshots: PostgresSnapshotStore) -> None:
    assert snapshots.latest() is None
    assert snapshots.list() == []


def test_save_and_load_latest_at_or_below(snapshots: PostgresSnapshotStore) -> None:
    snapshots.save(100, 1, "d100", b"state-100")
    snapshots.save(300, 2, "d300", b"state-300")
    snapshots.save(200, 1, "d200", b"\x00" * 5000)

    latest = snapshots.latest()
    assert latest is not None
    assert (latest.position, latest.term, latest.digest, latest.data) == (
        300,
        2,
        "d300",
        b"state-300",
    )
    below = snapshots.latest(at_or_below=299)
    assert below is not None
    assert (below.position, below.data) == (200, b"\x00" * 5000)
    assert snapshots.latest(at_or_below=99) is None
    infos = snapshots.list()
    assert [(i.position, i.term, i.digest, i.size) for i in infos] == [
        (300, 2, "d300", 9),
        (200, 1, "d200", 5000),
        (100, 1, "d100", 9),
    ]


def test_save_is_idempotent_but_refuses_a_different_state(
    snapshots: PostgresSnapshotStore,
) -> None:
    snapshots.save(100, 1, "d100", b"state")
    snapshots.save(100, 1, "d100", b"state")
    with pytest.raises(SnapshotConflictError, match="states diverged"):
        snapshots.save(100, 1, "other", b"state")
    assert len(snapshots.list()) == 1


def test_prune_keeps_the_latest_k(snapshots: PostgresSnapshotStore) -> None:
    for position in (10, 20, 30, 40):
        snapshots.save(position, 1, f"d{position}", b"s")
    assert snapshots.prune(keep=2) == 2
    assert [i.position for i in snapshots.list()] == [40, 30]
    assert snapshots.prune(keep=2) == 0
    with pytest.raises(ValueError, match="keep must be >= 1"):
        snapshots.prune(keep=0)
