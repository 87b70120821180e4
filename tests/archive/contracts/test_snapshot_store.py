"""The SnapshotStore port's contract (archive.ports.SnapshotStore), run by every adapter."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from archive import PostgresSnapshotStore, Snapshot, SnapshotConflictError
from archive.ports import SnapshotStore


def head(snapshot: Snapshot | None) -> tuple | None:
    """What a snapshot is: position, term, digest, data (not when it was stored)."""
    return None if snapshot is None else tuple(snapshot)[:4]


class SnapshotStoreContract:
    """Subclasses provide ``store``: a new, empty archive's snapshot store."""

    @pytest.fixture
    def store(self) -> Iterator[SnapshotStore]:
        raise NotImplementedError

    def test_an_empty_store(self, store: SnapshotStore) -> None:
        assert store.latest() is None
        assert store.latest(at_or_below=10) is None
        assert store.list() == []

    def test_latest_at_or_below_a_bound(self, store: SnapshotStore) -> None:
        for position in (10, 30, 20):
            store.save(position, 1, f"d{position}", b"s%d" % position)
        assert head(store.latest()) == (30, 1, "d30", b"s30")
        assert head(store.latest(at_or_below=29)) == (20, 1, "d20", b"s20")
        assert store.latest(at_or_below=10).position == 10
        assert store.latest(at_or_below=9) is None
        listed = store.list()
        assert [(s.position, s.term, s.digest, s.size) for s in listed] == [
            (30, 1, "d30", 3), (20, 1, "d20", 3), (10, 1, "d10", 3),
        ]  # fmt: skip

    def test_saving_the_same_snapshot_again_is_a_no_op(self, store: SnapshotStore) -> None:
        store.save(10, 2, "d", b"state")
        store.save(10, 2, "d", b"state")
        assert [s.position for s in store.list()] == [10]

    @pytest.mark.parametrize(("term", "digest"), [(2, "other"), (3, "d")])
    def test_another_state_at_a_saved_position_is_a_conflict(self, store, term, digest) -> None:
        store.save(10, 2, "d", b"state")
        with pytest.raises(SnapshotConflictError):
            store.save(10, term, digest, b"state")
        assert head(store.latest()) == (10, 2, "d", b"state")

    def test_prune_keeps_the_newest(self, store: SnapshotStore) -> None:
        for position in (10, 20, 30, 40):
            store.save(position, 1, f"d{position}", b"s")
        assert store.prune(keep=2) == 2
        assert [s.position for s in store.list()] == [40, 30]
        assert store.prune(keep=2) == 0

    def test_close_is_idempotent(self, store: SnapshotStore) -> None:
        store.close()
        store.close()


class TestPostgresSnapshotStore(SnapshotStoreContract):
    @pytest.fixture
    def store(self, location: str) -> Iterator[SnapshotStore]:
        store = PostgresSnapshotStore(location)
        yield store
        store.close()
