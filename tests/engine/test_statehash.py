"""The running state hash is a contract (``nodes.engine.statehash``): its value on a fixed
event sequence is pinned here, so a change of Python, machine, dict order or encoding
that moved it fails this test instead of raising false divergence alarms in a cluster."""

from __future__ import annotations

import zlib

import pytest

from bench.engine import generate
from nodes.engine import (
    HASH_VERSION,
    AddInstrument,
    CancelOrder,
    CodecError,
    Engine,
    PlaceOrder,
    SnapshotVersionError,
    encode_events,
)
from nodes.engine.snapshot import SNAPSHOT_MAGIC
from nodes.engine.statehash import FOLD_AT, combine, fold, split

# Values of the version-2 hash; if one of these changes, the hash is not the same
# contract any more: bump HASH_VERSION (and SNAPSHOT_VERSION) instead of re-pinning.
PINNED_SMALL = 0xD473C09D_09714E7B
PINNED_GENERATED_3000 = 0xA4D62465_509FF7B4
EMPTY = 1  # CRC-32 of nothing is 0, Adler-32 of nothing is 1


def small_sequence() -> list:
    ts = 1_700_000_000_000_000_000
    return [
        AddInstrument("ops", 1, "ACME", tick_size=5, lot_size=10, timestamp=ts),
        PlaceOrder("alice", 1, "acct-a", "ACME", 2, 20, 105, timestamp=ts + 1),
        PlaceOrder("bob", 1, "acct-b", "ACME", 1, 30, 110, timestamp=ts + 2),  # trades
        PlaceOrder("bob", 2, "acct-b", "ACME", 1, 10, 95, timestamp=ts + 3),
        CancelOrder("bob", 3, "acct-b", 3, timestamp=ts + 4),
        CancelOrder("bob", 3, "acct-b", 3, timestamp=ts + 5),  # duplicate
        PlaceOrder("", 1, "acct-x", "ACME", 1, 10, 95, timestamp=ts + 6),  # rejected
    ]


def run(commands) -> tuple[Engine, list]:
    engine = Engine()
    events = []
    for command in commands:
        events.extend(engine.process(command))
    return engine, events


def reference(events) -> int:
    """The definition, computed independently of the engine."""
    stream = b"".join(encode_events(events))
    return zlib.crc32(stream) << 32 | zlib.adler32(stream)


def prefix_references(events) -> list[int]:
    """reference(events[:n]) for every n, in one pass (zlib's own running crc32 and adler32)
    rather than one pass per prefix."""
    crc, adler = zlib.crc32(b""), zlib.adler32(b"")
    out = [crc << 32 | adler]
    for record in encode_events(events):
        crc, adler = zlib.crc32(record, crc), zlib.adler32(record, adler)
        out.append(crc << 32 | adler)
    return out


def test_version():
    assert HASH_VERSION == 2


def test_empty_engine():
    assert Engine().running_hash == EMPTY == reference([])


def test_pinned_value_on_a_fixed_sequence():
    engine, events = run(small_sequence())
    assert engine.position == len(events) == 8
    assert engine.running_hash == reference(events)
    assert engine.running_hash == PINNED_SMALL, hex(engine.running_hash)


def test_pinned_value_on_a_generated_stream():
    engine, events = run(generate(3000, 7))
    assert engine.running_hash == reference(events)
    assert engine.running_hash == PINNED_GENERATED_3000, hex(engine.running_hash)


def test_strings_are_covered():
    """Version 1 left strings out: two logs differing only in an account collided."""
    commands = small_sequence()
    renamed = [*commands[:3], PlaceOrder("bob", 2, "acct-B", "ACME", 1, 10, 95,
                                         timestamp=commands[3].timestamp), *commands[4:]]  # fmt: skip
    first, second = run(commands)[0], run(renamed)[0]
    assert first.position == second.position
    assert first.running_hash != second.running_hash


@pytest.mark.parametrize("batch", [1, 2, 3, 7, 15, 16, 17, 1000, FOLD_AT + 1])
def test_follower_gets_the_same_hash_whatever_its_batches(batch):
    leader, events = run(generate(FOLD_AT + 600, 3))
    follower = Engine()
    for i in range(0, len(events), batch):
        follower.apply_batch(events[i : i + batch])
        if i % (7 * batch) == 0:
            assert follower.running_hash == reference(events[: follower.position])
    assert follower.running_hash == leader.running_hash == reference(events)


def test_fold_is_the_stream_of_encoded_events():
    _, events = run(generate(20_000, 5))  # folds at array header sizes 1, 3 and 5
    crc, adler = fold(0, 1, events[:10])
    crc, adler = fold(crc, adler, events[10:70_000])
    assert combine(crc, adler) == reference(events)
    assert split(combine(crc, adler)) == (crc, adler)
    with pytest.raises(ValueError, match="64-bit"):
        split(1 << 64)


def test_snapshot_carries_the_hash_on():
    engine, _ = run(generate(2000, 11))
    restored = Engine.restore(engine.snapshot())
    assert restored.running_hash == engine.running_hash
    more = generate(2500, 11)[2000:]
    for command in more:
        engine.process(command)
        restored.process(command)
    assert restored.running_hash == engine.running_hash


def test_version_1_snapshots_are_refused_with_a_clear_error():
    data = Engine().snapshot()
    old = SNAPSHOT_MAGIC + b"\x01" + data[len(SNAPSHOT_MAGIC) + 1 :]
    with pytest.raises(SnapshotVersionError, match=r"version 1 .*Python's hash\(\)"):
        Engine.restore(old)
    assert issubclass(SnapshotVersionError, CodecError)
    # its digest can still be read (the node checks it before it decides what to do)
    assert Engine.snapshot_digest(old) == Engine().digest()


@pytest.mark.parametrize("batch", [1, 16, 700, FOLD_AT + 1])
def test_a_follower_applying_archive_records_gets_the_same_state_and_hash(batch):
    leader, events = run(generate(FOLD_AT + 600, 8))
    records = encode_events(events)
    follower = Engine()
    follower.apply_batch(events[:5])  # pending events are folded before the records
    for i in range(5, len(records), batch):
        follower.apply_records(records[i : i + batch])
    assert follower.position == leader.position
    assert follower.digest() == leader.digest()
    assert follower.running_hash == leader.running_hash == reference(events)


@pytest.mark.parametrize("batch", [1, 16, 700, FOLD_AT + 1, 2 * FOLD_AT + 3])
def test_the_leader_folding_its_batches_records_gets_the_same_hash(batch):
    """The leader folds each batch from the records it encoded for the archive
    (fold_hash_from), some of them already folded (FOLD_AT) in the middle of the batch."""
    commands = list(generate(2 * FOLD_AT + 900, 5))
    _, events = run(commands)
    expected = prefix_references(events)
    assert expected[-1] == reference(events)
    leader = Engine()
    for i in range(0, len(commands), batch):
        leader.fold_hash()
        applied = [event for command in commands[i : i + batch] for event in leader.process(command)]
        leader.fold_hash_from(encode_events(applied))
        assert leader.running_hash == expected[leader.position]
    assert leader.running_hash == reference(events)


def test_folding_from_fewer_records_than_events_pending_is_refused():
    engine, events = run(small_sequence())  # nothing folded yet: its 8 events are pending
    with pytest.raises(ValueError, match="3 records for 8 events"):
        engine.fold_hash_from(encode_events(events[:3]))
    assert engine.running_hash == reference(events)  # nothing was folded from the records
