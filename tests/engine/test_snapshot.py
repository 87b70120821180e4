"""Snapshots: restore + replay gives the same digest and running hash; versioned bytes."""

from __future__ import annotations

import pytest

from nodes.engine import SNAPSHOT_VERSION, CodecError, Engine, TimeInForce
from nodes.engine.snapshot import SNAPSHOT_MAGIC
from tests.engine.conftest import SYMBOL, replay


def busy_book(engine, alice, bob, carol):
    alice.sell(30, 110)
    bob.sell(20, 105)
    carol.buy(10, 95)
    carol.buy(20, 100)
    alice.buy(30, 105)
    bob.replace(2, 110, 40)
    carol.cancel(3)
    bob.buy(10, market=True, tif=TimeInForce.IOC)


def test_restore_gives_the_same_state(engine, alice, bob, carol):
    busy_book(engine, alice, bob, carol)
    restored = Engine.restore(engine.snapshot())
    assert restored.digest() == engine.digest()
    assert restored.running_hash == engine.running_hash
    assert restored.position == engine.position
    assert restored.depth(SYMBOL) == engine.depth(SYMBOL)
    assert restored.order_status(1) == engine.order_status(1)


def test_restore_then_replay_equals_full_replay(engine, alice, bob, carol):
    busy_book(engine, alice, bob, carol)
    log = engine.log
    for cut in range(len(log) + 1):  # also cuts inside one command's events
        head = replay(log[:cut])
        tail = Engine.restore(head.snapshot())
        tail.apply_batch(log[cut:])
        assert tail.digest() == engine.digest(), cut
        assert tail.running_hash == engine.running_hash, cut


def test_restored_engine_keeps_working_like_the_original(engine, alice, bob, carol):
    busy_book(engine, alice, bob, carol)
    restored = Engine.restore(engine.snapshot())
    follow_up = alice.sell(20, 95)
    assert restored.process(alice_last_command(alice)) == follow_up
    assert restored.digest() == engine.digest()


def alice_last_command(alice):
    from nodes.engine import PlaceOrder

    return PlaceOrder("alice", alice.seq, "alice", SYMBOL, 2, 20, 95, timestamp=alice.ts)


def test_snapshot_of_an_empty_engine():
    empty = Engine()
    assert Engine.restore(empty.snapshot()).digest() == empty.digest()


def test_snapshot_is_versioned(engine):
    data = engine.snapshot()
    assert data.startswith(SNAPSHOT_MAGIC)
    assert data[len(SNAPSHOT_MAGIC)] == SNAPSHOT_VERSION
    future = SNAPSHOT_MAGIC + bytes([SNAPSHOT_VERSION + 1]) + data[len(SNAPSHOT_MAGIC) + 1 :]
    with pytest.raises(CodecError, match="unsupported snapshot version"):
        Engine.restore(future)


@pytest.mark.parametrize(
    "data", [b"", b"hello world", SNAPSHOT_MAGIC + bytes([SNAPSHOT_VERSION]) + b"\xc1junk"]
)
def test_garbage_snapshot_is_a_codec_error(data):
    with pytest.raises(CodecError):
        Engine.restore(data)


def test_tampered_snapshot_is_detected(engine, alice):
    alice.buy(10, 100)
    data = bytearray(engine.snapshot())
    index = data.rindex(b"alice")
    data[index] = ord("A")
    with pytest.raises(CodecError, match="corrupt"):
        Engine.restore(bytes(data))


def test_digest_changes_with_state(engine, alice):
    before = engine.digest()
    alice.buy(10, 100)
    assert engine.digest() != before
    assert len(engine.digest()) == 64


def test_snapshot_digest_is_read_from_the_snapshot_without_restoring():
    from nodes.engine import AddInstrument

    engine = Engine()
    engine.process(AddInstrument("ops", 1, "XYZ"))
    data = engine.snapshot()
    assert Engine.snapshot_digest(data) == engine.digest()
    with pytest.raises(CodecError):
        Engine.snapshot_digest(b"TESNAP\x01 not msgpack")
