"""Idempotency: a re-delivered command answers with its original result; old seqs fail."""

from __future__ import annotations

from nodes.engine import (
    DEDUP_WINDOW,
    AddInstrument,
    CancelOrder,
    CommandDuplicate,
    Engine,
    PlaceOrder,
    Reason,
    Side,
    TimeInForce,
)
from nodes.engine.clients import window as _window
from tests.engine.conftest import SYMBOL, kinds, replay


def place(seq: int, price: int = 100, qty: int = 10, side: int = Side.BUY, **kw) -> PlaceOrder:
    return PlaceOrder("alice", seq, "alice", SYMBOL, side, qty, price, **kw)


def test_duplicate_points_at_the_original_result(engine, bob):
    bob.sell(10, 100)
    bob.sell(10, 105)
    first = engine.position + 1
    original = engine.process(place(1, price=105, qty=30))
    assert kinds(original) == ["OrderAccepted", "Trade", "Trade"]
    digest = engine.digest()
    again = engine.process(place(1, price=105, qty=30, timestamp=99))
    assert kinds(again) == ["CommandDuplicate"]
    dup = again[0]
    assert isinstance(dup, CommandDuplicate)
    assert (dup.client_id, dup.client_seq, dup.timestamp) == ("alice", 1, 99)
    assert (dup.original_position, dup.original_count) == (first, 3)
    assert engine.log[first - 1 : first - 1 + 3] == original
    # no new effect: the book is the same, only position (and the hash) moved on
    assert engine.depth(SYMBOL)["bids"] == [[105, 10, 1]]
    assert digest != engine.digest()
    assert engine.order_status(4) is None


def test_duplicate_of_a_rejected_command_points_at_the_rejection(engine):
    first = engine.position + 1
    engine.process(place(1, price=101))
    dup = engine.process(place(1, price=101))[0]
    assert (dup.original_position, dup.original_count) == (first, 1)


def test_duplicate_of_an_older_command_in_the_window(engine):
    first = engine.position + 1
    for seq in range(1, 6):
        engine.process(place(seq, price=100 - 5 * seq))
    dup = engine.process(place(1, price=95))[0]
    assert (dup.original_position, dup.original_count) == (first, 1)
    dup = engine.process(place(3, price=85))[0]
    assert dup.original_position == first + 2


def test_duplicate_right_after_a_duplicate(engine):
    engine.process(place(1))
    a = engine.process(place(1))[0]
    b = engine.process(place(1))[0]
    assert (a.original_position, a.original_count) == (b.original_position, b.original_count)


def test_gaps_are_allowed_and_skipped_seqs_are_stale(engine):
    assert kinds(engine.process(place(10))) == ["OrderAccepted"]
    assert kinds(engine.process(place(20, price=95))) == ["OrderAccepted"]
    stale = engine.process(place(15, price=90))
    assert kinds(stale) == ["OrderRejected"]
    assert stale[0].reason == Reason.STALE_SEQUENCE
    assert kinds(engine.process(place(21, price=90))) == ["OrderAccepted"]


def test_seq_older_than_the_window_is_stale():
    engine = Engine()
    engine.process(AddInstrument("ops", 1, SYMBOL))
    for seq in range(1, DEDUP_WINDOW + 2):
        engine.process(CancelOrder("alice", seq, "alice", 999))
    stale = engine.process(CancelOrder("alice", 1, "alice", 999))[0]
    assert stale.reason == Reason.STALE_SEQUENCE
    dup = engine.process(CancelOrder("alice", 2, "alice", 999))[0]
    assert isinstance(dup, CommandDuplicate)


def test_stale_and_duplicate_answers_are_not_remembered(engine):
    engine.process(place(5))
    engine.process(place(3))  # stale
    engine.process(place(5))  # duplicate
    assert kinds(engine.process(place(6, price=95))) == ["OrderAccepted"]
    window = _window(engine._clients["alice"])
    assert [entry[0] for entry in window] == [5, 6]


def test_sequences_are_per_client(engine):
    assert kinds(engine.process(place(1))) == ["OrderAccepted"]
    other = PlaceOrder("bob", 1, "bob", SYMBOL, Side.SELL, 10, 200)
    assert kinds(engine.process(other)) == ["OrderAccepted"]


def test_duplicates_survive_replay_and_snapshot(engine):
    engine.process(place(1, tif=TimeInForce.IOC))
    follower = replay(engine.log)
    restored = Engine.restore(engine.snapshot())
    for e in (engine, follower, restored):
        dup = e.handle(place(1, tif=TimeInForce.IOC))[0]
        assert isinstance(dup, CommandDuplicate)
        assert (dup.original_position, dup.original_count) == (2, 2)


def test_handle_is_pure(engine):
    digest, position, h = engine.digest(), engine.position, engine.running_hash
    engine.handle(place(1))
    engine.handle(place(1))
    assert (engine.digest(), engine.position, engine.running_hash) == (digest, position, h)


def test_window_wraps_around_and_survives_a_snapshot(engine):
    for seq in range(1, 2 * DEDUP_WINDOW + 10):
        engine.process(CancelOrder("alice", seq, "alice", 999))
    last = 2 * DEDUP_WINDOW + 9
    window = _window(engine._clients["alice"])
    assert [e[0] for e in window] == list(range(last - DEDUP_WINDOW + 1, last + 1))
    restored = Engine.restore(engine.snapshot())
    assert restored.digest() == engine.digest()
    for e in (engine, restored):
        assert isinstance(
            e.handle(CancelOrder("alice", last - 5, "alice", 999))[0], CommandDuplicate
        )
        stale = e.handle(CancelOrder("alice", last - DEDUP_WINDOW, "alice", 999))[0]
        assert stale.reason == Reason.STALE_SEQUENCE


def test_sequence_too_large_is_invalid(engine):
    events = engine.process(CancelOrder("alice", 1 << 63, "alice", 999))
    assert events[0].reason == Reason.INVALID_SEQUENCE


def test_the_window_lookup_finds_what_a_scan_of_the_window_finds():
    # Sequences with gaps (a rejected command consumes none), past the ring's wrap-around.
    import random

    from nodes.engine.clients import find, new_client, window
    from nodes.engine.types import DEDUP_WINDOW

    rng = random.Random(5)
    client = new_client()
    seq = 0
    for count in (1, DEDUP_WINDOW - 1, DEDUP_WINDOW, 2 * DEDUP_WINDOW + 7):
        while client[2] < count:
            seq += rng.choice((1, 1, 2, 5))
            slot = client[2] % DEDUP_WINDOW * 3
            client[1][slot : slot + 3] = type(client[1])("q", [seq, 10 * seq, seq % 7 + 1])
            client[0], client[2] = seq, client[2] + 1
        held = {s: (position, events) for s, position, events in window(client)}
        for asked in range(max(1, seq - 3 * DEDUP_WINDOW), seq + 3):
            assert find(client, asked) == held.get(asked), asked
