"""Order types and time in force: limit, market, GTC, IOC, FOK, post-only, priority."""

from __future__ import annotations

from nodes.engine import OrderAccepted, OrderCancelled, Reason, Side, TimeInForce, Trade
from tests.engine.conftest import SYMBOL, kinds


def test_limit_order_rests_when_nothing_crosses(engine, alice):
    events = alice.buy(30, 100)
    assert kinds(events) == ["OrderAccepted"]
    accepted = events[0]
    assert (accepted.client_id, accepted.client_seq) == ("alice", 1)
    assert accepted.order_id == 1
    assert engine.depth(SYMBOL)["bids"] == [[100, 30, 1]]
    assert engine.order_status(1)["status"] == "open"


def test_order_ids_are_assigned_in_sequence(alice):
    ids = [alice.buy(10, 100 - 5 * i)[0].order_id for i in range(3)]
    assert ids == [1, 2, 3]


def test_crossing_limit_trades_at_maker_price_and_rests_the_rest(engine, alice, bob):
    alice.sell(20, 105)
    events = bob.buy(50, 110)
    assert kinds(events) == ["OrderAccepted", "Trade"]
    trade = events[1]
    assert (trade.price, trade.qty, trade.taker_side) == (105, 20, Side.BUY)
    assert (trade.maker_order_id, trade.taker_order_id) == (1, 2)
    assert (trade.maker_remaining, trade.taker_remaining) == (0, 30)
    depth = engine.depth(SYMBOL)
    assert depth["asks"] == []
    assert depth["bids"] == [[110, 30, 1]]
    assert engine.order_status(2)["filled_qty"] == 20
    assert engine.order_status(2)["status"] == "partially_filled"


def test_sweep_walks_levels_best_first_in_time_priority(engine, alice, bob, carol):
    alice.sell(20, 110)  # 1
    bob.sell(10, 105)  # 2
    alice.sell(10, 105)  # 3, after bob's at the same price
    events = carol.buy(30, 110)
    trades = [e for e in events if isinstance(e, Trade)]
    assert [(t.maker_order_id, t.price, t.qty) for t in trades] == [
        (2, 105, 10),
        (3, 105, 10),
        (1, 110, 10),
    ]
    assert engine.depth(SYMBOL)["asks"] == [[110, 10, 1]]


def test_limit_does_not_trade_beyond_its_price(engine, alice, bob):
    alice.sell(10, 100)
    alice.sell(10, 120)
    events = bob.buy(30, 110)
    assert [e.qty for e in events if isinstance(e, Trade)] == [10]
    assert engine.depth(SYMBOL) | {"position": 0} == {
        "symbol": SYMBOL,
        "status": "open",
        "position": 0,
        "bids": [[110, 20, 1]],
        "asks": [[120, 10, 1]],
    }


def test_market_order_takes_liquidity_and_cancels_the_rest(engine, alice, bob):
    alice.sell(10, 100)
    alice.sell(10, 200)
    events = bob.buy(30, market=True)
    assert kinds(events) == ["OrderAccepted", "Trade", "Trade", "OrderCancelled"]
    assert [t.price for t in events[1:3]] == [100, 200]
    cancel = events[3]
    assert (cancel.order_id, cancel.reason, cancel.qty) == (3, Reason.UNFILLED, 10)
    assert engine.depth(SYMBOL)["asks"] == []
    assert engine.depth(SYMBOL)["bids"] == []


def test_market_order_on_empty_book_is_accepted_then_cancelled(engine, bob):
    events = bob.sell(10, market=True)
    assert kinds(events) == ["OrderAccepted", "OrderCancelled"]
    assert events[1].reason == Reason.UNFILLED


def test_ioc_fills_what_it_can_and_never_rests(engine, alice, bob):
    alice.sell(10, 100)
    events = bob.buy(30, 100, tif=TimeInForce.IOC)
    assert kinds(events) == ["OrderAccepted", "Trade", "OrderCancelled"]
    assert events[2].qty == 20
    assert engine.depth(SYMBOL)["bids"] == []


def test_ioc_without_cross_is_cancelled(engine, bob):
    events = bob.buy(30, 100, tif=TimeInForce.IOC)
    assert kinds(events) == ["OrderAccepted", "OrderCancelled"]
    assert engine.depth(SYMBOL)["bids"] == []


def test_fok_fills_completely(engine, alice, bob):
    alice.sell(10, 100)
    alice.sell(20, 105)
    events = bob.buy(30, 105, tif=TimeInForce.FOK)
    assert kinds(events) == ["OrderAccepted", "Trade", "Trade"]
    assert events[-1].taker_remaining == 0
    assert engine.depth(SYMBOL)["asks"] == []


def test_fok_that_cannot_fill_is_rejected_without_effect(engine, alice, bob):
    alice.sell(10, 100)
    before = engine.depth(SYMBOL)
    events = bob.buy(30, 105, tif=TimeInForce.FOK)
    assert kinds(events) == ["OrderRejected"]
    assert events[0].reason == Reason.FOK_NOT_FILLABLE
    assert engine.depth(SYMBOL)["asks"] == before["asks"]


def test_fok_does_not_count_own_orders(engine, alice, bob):
    alice.sell(20, 100)
    bob.sell(10, 100)
    events = alice.buy(20, 100, tif=TimeInForce.FOK)
    assert events[0].reason == Reason.FOK_NOT_FILLABLE


def test_market_fok(engine, alice, bob):
    alice.sell(10, 100)
    assert bob.buy(20, market=True, tif=TimeInForce.FOK)[0].reason == Reason.FOK_NOT_FILLABLE
    assert kinds(bob.buy(10, market=True, tif=TimeInForce.FOK)) == ["OrderAccepted", "Trade"]


def test_post_only_rests_when_it_does_not_cross(engine, alice, bob):
    alice.sell(10, 105)
    events = bob.buy(10, 100, post_only=True)
    assert kinds(events) == ["OrderAccepted"]
    assert events[0].post_only is True
    assert engine.depth(SYMBOL)["bids"] == [[100, 10, 1]]


def test_post_only_that_would_cross_is_rejected(engine, alice, bob):
    alice.sell(10, 105)
    events = bob.buy(10, 105, post_only=True)
    assert kinds(events) == ["OrderRejected"]
    assert events[0].reason == Reason.POST_ONLY_WOULD_CROSS
    assert engine.depth(SYMBOL)["bids"] == []


def test_events_carry_the_command_timestamp(engine, alice, bob):
    alice.sell(10, 100)
    events = bob.buy(20, 100, tif=TimeInForce.IOC)
    assert {e.timestamp for e in events} == {bob.ts}
    assert all((e.client_id, e.client_seq) == ("bob", 1) for e in events)


def test_every_event_advances_the_position(engine, alice, bob):
    start = engine.position
    alice.sell(10, 100)
    events = bob.buy(30, 100, tif=TimeInForce.IOC)
    assert engine.position == start + 1 + len(events)


def test_accepted_event_describes_the_order(alice):
    accepted = alice.sell(10, 100, tif=TimeInForce.GTC)[0]
    assert isinstance(accepted, OrderAccepted)
    assert (accepted.symbol, accepted.account, accepted.side, accepted.price, accepted.qty) == (
        SYMBOL,
        "alice",
        Side.SELL,
        100,
        10,
    )


def test_cancel_removes_the_order(engine, alice):
    alice.buy(10, 100)
    alice.buy(20, 100)
    events = alice.cancel(1)
    assert kinds(events) == ["OrderCancelled"]
    assert isinstance(events[0], OrderCancelled)
    assert (events[0].reason, events[0].qty) == (Reason.REQUESTED, 10)
    assert engine.depth(SYMBOL)["bids"] == [[100, 20, 1]]
    assert engine.order_status(1) == {"order_id": 1, "status": "closed"}
    alice.cancel(2)
    assert engine.depth(SYMBOL)["bids"] == []


def test_cancelled_order_in_the_middle_keeps_others_priority(engine, alice, bob, carol):
    alice.sell(10, 100)  # 1
    bob.sell(10, 100)  # 2
    alice.sell(10, 100)  # 3
    bob.cancel(2)
    events = carol.buy(20, 100)
    assert [t.maker_order_id for t in events if isinstance(t, Trade)] == [1, 3]


def test_fok_on_an_empty_side_is_rejected(engine, alice, bob):
    alice.buy(10, 90)
    events = alice.buy(10, 90, tif=TimeInForce.FOK)
    assert kinds(events) == ["OrderRejected"]
    assert events[0].reason == Reason.FOK_NOT_FILLABLE
    assert kinds(bob.buy(10, market=True, tif=TimeInForce.FOK)) == ["OrderRejected"]
