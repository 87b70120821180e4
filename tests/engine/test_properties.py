"""Property tests on generated command streams: replay, snapshots, crossing, quantity
conservation, idempotency and agreement with the naive reference engine."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from nodes.engine import (
    AddInstrument,
    CancelOrder,
    Command,
    CommandDuplicate,
    Engine,
    Event,
    InstrumentStatus,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    OrderReplaced,
    OrderType,
    PlaceOrder,
    ReplaceOrder,
    SetInstrumentStatus,
    Side,
    TimeInForce,
    Trade,
    decode_events,
    encode_events,
)
from tests.engine.reference import ReferenceEngine

SYMBOLS = ["A", "B"]
PRICES = [95, 100, 100, 100, 105, 105, 105, 110, 101, 40, 250]
QTYS = [1, 2, 2, 4, 4, 6, 10, 3]
CLIENTS = 4
# client 3 trades for the same account as client 0: self-trades across clients
ACCOUNTS = ["acct0", "acct1", "acct2", "acct0"]

seq_modes = st.sampled_from(["next"] * 12 + ["repeat", "old", "skip"])
place_op = st.tuples(
    st.just("place"),
    st.integers(0, CLIENTS - 1),
    seq_modes,
    st.sampled_from([*SYMBOLS, "A", "B", "Z"]),
    st.sampled_from([Side.BUY, Side.SELL]),
    st.sampled_from([OrderType.LIMIT] * 8 + [OrderType.MARKET]),
    st.sampled_from(PRICES),
    st.sampled_from(QTYS),
    st.sampled_from([TimeInForce.GTC] * 5 + [TimeInForce.IOC, TimeInForce.FOK]),
    st.sampled_from([False] * 5 + [True]),
)
# cancels and replaces name one of the last orders placed, mostly by its owner
order_refs = st.tuples(st.integers(0, 6), st.sampled_from([True] * 6 + [False]))
cancel_op = st.tuples(st.just("cancel"), st.integers(0, CLIENTS - 1), seq_modes, order_refs)
replace_op = st.tuples(
    st.just("replace"),
    st.integers(0, CLIENTS - 1),
    seq_modes,
    order_refs,
    st.sampled_from(PRICES),
    st.sampled_from(QTYS),
)
status_op = st.tuples(
    st.just("status"),
    st.sampled_from(SYMBOLS),
    st.sampled_from(
        [InstrumentStatus.OPEN] * 6 + [InstrumentStatus.HALTED, InstrumentStatus.CANCEL_ONLY]
    ),
)
ops_strategy = st.lists(
    st.one_of(place_op, place_op, place_op, place_op, cancel_op, replace_op, replace_op, status_op),
    min_size=10,
    max_size=150,
)


def build(ops: list[tuple]) -> list[Command]:
    """Turns drawn operations into commands with per-client sequences (some repeated,
    some stale, some with gaps) and increasing timestamps."""
    commands: list[Command] = [
        AddInstrument("ops", 1, "A", 5, 1, band_low=50, band_high=200, timestamp=1),
        AddInstrument("ops", 2, "B", 1, 2, timestamp=2),
    ]
    history: list[list[int]] = [[] for _ in range(CLIENTS)]
    owners: list[int] = []  # client of each place op: a guess of order id -> owner
    ops_seq = 2
    for ts, op in enumerate(ops, start=10):
        if op[0] == "status":
            ops_seq += 1
            commands.append(SetInstrumentStatus("ops", ops_seq, op[1], op[2], timestamp=ts))
            continue
        client = op[1]
        target = 0
        if op[0] in ("cancel", "replace"):
            back, by_owner = op[3]
            target = max(1, len(owners) - back)
            if by_owner and owners:
                client = owners[target - 1]
        else:
            owners.append(client)
        seqs = history[client]
        last = seqs[-1] if seqs else 0
        mode = op[2]
        if mode == "repeat" and seqs:
            seq = last
        elif mode == "old" and seqs:
            seq = seqs[ts % len(seqs)]
        elif mode == "skip":
            seq = last + 3
        else:
            seq = last + 1
        if seq > last:
            seqs.append(seq)
        cid, account = f"client{client}", ACCOUNTS[client]
        if op[0] == "place":
            _, _, _, symbol, side, otype, price, qty, tif, post_only = op
            if otype == OrderType.MARKET:
                price, post_only = 0, False
                tif = TimeInForce.IOC if tif == TimeInForce.GTC else tif
            commands.append(
                PlaceOrder(cid, seq, account, symbol, side, qty, price, otype, tif, post_only,
                           timestamp=ts)
            )  # fmt: skip
        elif op[0] == "cancel":
            commands.append(CancelOrder(cid, seq, account, target, timestamp=ts))
        else:
            commands.append(ReplaceOrder(cid, seq, account, target, op[4], op[5], timestamp=ts))
    return commands


def generate_seeded(seed: int) -> list[Command]:
    """A busier stream: cancels and replaces target orders that really rest (found by
    running a scratch engine while generating), prices around a common touch."""
    rng = random.Random(seed)
    scratch = Engine()
    commands: list[Command] = []
    seqs = [0] * CLIENTS

    def emit(command: Command) -> None:
        commands.append(command)
        scratch.process(command)

    emit(AddInstrument("ops", 1, "A", 5, 1, band_low=50, band_high=200, timestamp=1))
    emit(AddInstrument("ops", 2, "B", 1, 2, timestamp=2))
    ops_seq = 2
    for ts in range(10, 10 + rng.randint(20, 200)):
        client = rng.randrange(CLIENTS)
        r = rng.random()
        live = sorted(scratch._orders)
        if r < 0.03:
            ops_seq += 1
            status = rng.choice([InstrumentStatus.HALTED, InstrumentStatus.CANCEL_ONLY])
            emit(SetInstrumentStatus("ops", ops_seq, rng.choice(SYMBOLS), status, timestamp=ts))
            ops_seq += 1
            emit(SetInstrumentStatus("ops", ops_seq, rng.choice(SYMBOLS), 1, timestamp=ts))
            continue
        seqs[client] += rng.choice([1] * 20 + [0, 2])  # some repeats, some gaps
        seq = max(seqs[client], 1)
        if r < 0.25 and live:
            order = scratch._orders[rng.choice(live)]
            owner = order.account if rng.random() < 0.9 else "acct9"
            if rng.random() < 0.5:
                emit(CancelOrder(f"client{client}", seq, owner, order.order_id, timestamp=ts))
            else:
                price = order.price + rng.choice([-10, -5, 0, 0, 5, 10])
                qty = max(order.remaining + rng.choice([-2, -1, 0, 1, 2]), 0)
                emit(ReplaceOrder(f"client{client}", seq, owner, order.order_id, price, qty,
                                  timestamp=ts))  # fmt: skip
            continue
        symbol = rng.choice(SYMBOLS)
        side = rng.choice([Side.BUY, Side.SELL])
        qty = rng.choice([2, 2, 4, 6, 10, 20, 3])
        tif = rng.choice([TimeInForce.GTC] * 6 + [TimeInForce.IOC, TimeInForce.FOK])
        if rng.random() < 0.08:
            otype, price, post_only = OrderType.MARKET, 0, False
            tif = TimeInForce.FOK if tif == TimeInForce.FOK else TimeInForce.IOC
        else:
            otype, post_only = OrderType.LIMIT, rng.random() < 0.1
            price = 100 + rng.choice([-15, -10, -5, 0, 5, 10, 15]) * (1 if side == Side.BUY else -1)
            price += rng.choice([0] * 6 + [-10, 10, 1])
        emit(PlaceOrder(f"client{client}", seq, ACCOUNTS[client], symbol, side, qty, price, otype,
                        tif, post_only, timestamp=ts))  # fmt: skip
    return commands


streams = st.one_of(ops_strategy.map(build), st.integers(0, 2**32).map(generate_seeded))


def run(commands: list[Command]) -> tuple[Engine, list[Event], list[list[Event]]]:
    engine = Engine()
    results = [engine.process(c) for c in commands]
    return engine, [e for r in results for e in r], results


def engine_book(engine: Engine) -> dict[tuple[str, int], list[tuple[int, str, int, int]]]:
    out = {}
    for symbol in engine.symbols():
        book = engine._books[symbol]
        for side in (Side.BUY, Side.SELL):
            out[(symbol, side)] = [
                (o.order_id, o.account, level.price, o.remaining)
                for level in book.sides[side].best_first()
                for o in level.live_orders()
            ]
    return out


@given(streams)
def test_replay_on_a_fresh_engine_gives_the_same_digest_and_hash(commands):
    leader, log, _ = run(commands)
    follower = Engine()
    follower.apply_batch(log)
    assert follower.position == leader.position == len(log)
    assert follower.digest() == leader.digest()
    assert follower.running_hash == leader.running_hash
    # one event at a time is the same as a batch
    single = Engine()
    for event in log:
        single.apply(event)
    assert single.running_hash == leader.running_hash


@given(streams, st.data())
def test_snapshot_at_a_random_point_then_replay_gives_the_same_state(commands, data):
    leader, log, _ = run(commands)
    cut = data.draw(st.integers(0, len(log)), label="cut")
    head = Engine()
    head.apply_batch(log[:cut])
    restored = Engine.restore(head.snapshot())
    assert restored.digest() == head.digest()
    restored.apply_batch(log[cut:])
    assert restored.digest() == leader.digest()
    assert restored.running_hash == leader.running_hash


@given(streams)
def test_the_book_is_never_left_crossed_and_handle_changes_nothing(commands):
    engine = Engine()
    for command in commands:
        before = (engine.digest(), engine.running_hash, engine.position)
        events = engine.handle(command)
        assert (engine.digest(), engine.running_hash, engine.position) == before
        assert events
        assert (events[0].client_id, events[0].client_seq) == (
            command.client_id,
            command.client_seq,
        )
        assert all(e.timestamp == command.timestamp for e in events)
        for event in events:
            engine.apply(event)
        for symbol in engine.symbols():
            depth = engine.depth(symbol, levels=1)
            if depth["bids"] and depth["asks"]:
                assert depth["bids"][0][0] < depth["asks"][0][0]


@given(streams)
def test_quantity_is_conserved(commands):
    engine, log, _ = run(commands)
    introduced: dict[int, int] = {}  # accepted qty plus replace changes
    traded: dict[int, int] = {}
    cancelled: dict[int, int] = {}
    open_qty: dict[int, int] = {}
    for e in log:
        if isinstance(e, OrderAccepted):
            introduced[e.order_id] = open_qty[e.order_id] = e.qty
        elif isinstance(e, Trade):
            for oid, left in ((e.maker_order_id, e.maker_remaining),
                              (e.taker_order_id, e.taker_remaining)):  # fmt: skip
                traded[oid] = traded.get(oid, 0) + e.qty
                open_qty[oid] -= e.qty
                assert open_qty[oid] == left
        elif isinstance(e, OrderCancelled):
            assert e.qty == open_qty[e.order_id]
            cancelled[e.order_id] = cancelled.get(e.order_id, 0) + e.qty
            open_qty[e.order_id] = 0
        elif isinstance(e, OrderReplaced):
            introduced[e.order_id] += e.qty - open_qty[e.order_id]
            open_qty[e.order_id] = e.qty
    resting = {oid: o.remaining for oid, o in engine._orders.items()}
    for oid, qty in introduced.items():
        rest = resting.get(oid, 0)
        assert qty == traded.get(oid, 0) + cancelled.get(oid, 0) + rest, oid
        assert open_qty[oid] == rest
    assert set(resting) <= set(introduced)
    levels = [
        level for b in engine._books.values() for s in b.sides[1:] for level in s.levels.values()
    ]
    assert sum(level.qty for level in levels) == sum(resting.values())
    assert sum(level.count for level in levels) == len(resting)


@given(streams)
def test_the_real_engine_agrees_with_the_reference_engine(commands):
    engine = Engine()
    reference = ReferenceEngine()
    for command in commands:
        assert engine.process(command) == reference.process(command), command
    assert engine_book(engine) == reference.book()
    assert engine.position == reference.position


@given(streams, st.data())
def test_a_resent_command_gets_its_original_result(commands, data):
    engine, log, results = run(commands)
    index = data.draw(st.integers(0, len(commands) - 1), label="resend")
    command = commands[index]
    answer = engine.handle(command)
    if isinstance(answer[0], CommandDuplicate):
        dup = answer[0]
        original = log[dup.original_position - 1 : dup.original_position - 1 + dup.original_count]
        key = (command.client_id, command.client_seq)
        first_result = next(
            r for c, r in zip(commands, results, strict=True)
            if (c.client_id, c.client_seq) == key and _recorded(r)
        )  # fmt: skip
        assert original == first_result
    else:
        assert isinstance(answer[0], OrderRejected)


def _recorded(result: list[Event]) -> bool:
    first = result[0]
    if isinstance(first, CommandDuplicate):
        return False
    return not (isinstance(first, OrderRejected) and first.reason in (2, 3))


@given(streams)
def test_generated_events_survive_the_codec(commands):
    _, log, _ = run(commands)
    assert decode_events(encode_events(log)) == log


@given(streams)
def test_process_is_handle_then_apply(commands):
    fused = Engine()
    plain = Engine()
    for command in commands:
        events = plain.handle(command)
        for event in events:
            plain.apply(event)
        assert fused.process(command) == events
    assert fused.digest() == plain.digest()
    assert fused.running_hash == plain.running_hash
