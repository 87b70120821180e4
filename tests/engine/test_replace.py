"""Replace: priority lost on a price change or a quantity increase, kept on a decrease."""

from __future__ import annotations

from nodes.engine import OrderReplaced, Reason, Trade
from tests.engine.conftest import SYMBOL, kinds


def makers(events):
    return [(t.maker_order_id, t.qty) for t in events if isinstance(t, Trade)]


def test_quantity_decrease_keeps_priority(engine, alice, bob, carol):
    alice.sell(30, 100)  # 1
    bob.sell(10, 100)  # 2
    events = alice.replace(1, 100, 20)
    assert kinds(events) == ["OrderReplaced"]
    assert events[0].priority_kept is True
    assert engine.depth(SYMBOL)["asks"] == [[100, 30, 2]]
    assert makers(carol.buy(20, 100)) == [(1, 20)]


def test_same_price_and_quantity_keeps_priority(engine, alice, bob, carol):
    alice.sell(30, 100)
    bob.sell(10, 100)
    assert alice.replace(1, 100, 30)[0].priority_kept is True
    assert makers(carol.buy(10, 100)) == [(1, 10)]


def test_quantity_increase_loses_priority(engine, alice, bob, carol):
    alice.sell(10, 100)  # 1
    bob.sell(10, 100)  # 2
    events = alice.replace(1, 100, 20)
    assert events[0].priority_kept is False
    assert engine.depth(SYMBOL)["asks"] == [[100, 30, 2]]
    assert makers(carol.buy(20, 100)) == [(2, 10), (1, 10)]


def test_price_change_loses_priority_and_moves_the_order(engine, alice, bob, carol):
    alice.sell(10, 100)  # 1
    bob.sell(10, 105)  # 2
    events = alice.replace(1, 105, 10)
    assert isinstance(events[0], OrderReplaced)
    assert events[0].priority_kept is False
    assert engine.depth(SYMBOL)["asks"] == [[105, 20, 2]]
    assert makers(carol.buy(10, 105)) == [(2, 10)]
    assert engine.order_status(1)["price"] == 105


def test_replace_keeps_the_order_id_and_filled_quantity(engine, alice, bob):
    alice.sell(30, 100)
    bob.buy(10, 100)
    alice.replace(1, 110, 50)
    status = engine.order_status(1)
    assert (status["open_qty"], status["filled_qty"], status["price"]) == (50, 10, 110)


def test_replace_that_crosses_trades(engine, alice, bob):
    alice.sell(10, 110)  # 1
    bob.buy(20, 100)  # 2
    events = bob.replace(2, 110, 20)
    assert kinds(events) == ["OrderReplaced", "Trade"]
    assert (events[1].maker_order_id, events[1].taker_order_id, events[1].qty) == (1, 2, 10)
    assert engine.depth(SYMBOL)["bids"] == [[110, 10, 1]]
    assert engine.depth(SYMBOL)["asks"] == []


def test_replace_that_fills_completely_closes_the_order(engine, alice, bob):
    alice.sell(30, 110)
    bob.buy(20, 100)
    bob.replace(2, 110, 20)
    assert engine.order_status(2) == {"order_id": 2, "status": "closed"}
    assert engine.depth(SYMBOL)["bids"] == []


def test_post_only_replace_that_would_cross_is_rejected(engine, alice, bob):
    alice.sell(10, 110)
    bob.buy(20, 100, post_only=True)
    events = bob.replace(2, 110, 20)
    assert events[0].reason == Reason.POST_ONLY_WOULD_CROSS
    assert engine.order_status(2)["price"] == 100


def test_replace_rejects(engine, alice, bob):
    alice.buy(10, 100)
    assert alice.replace(99, 100, 10)[0].reason == Reason.UNKNOWN_ORDER
    assert bob.replace(1, 100, 10)[0].reason == Reason.NOT_ORDER_OWNER
    assert alice.replace(1, 101, 10)[0].reason == Reason.BAD_TICK
    assert alice.replace(1, 100, 15)[0].reason == Reason.BAD_LOT
    assert alice.replace(1, 100, 0)[0].reason == Reason.INVALID_COMMAND
    assert alice.replace(1, 0, 10)[0].reason == Reason.INVALID_COMMAND
    assert all(e.order_id == 1 for e in [alice.replace(1, 101, 10)[0]])


def test_replace_outside_the_band_is_rejected(engine, ops, alice):
    ops.add("BAND", tick=1, lot=1, band_low=90, band_high=110)
    alice.buy(1, 100, symbol="BAND")
    assert alice.replace(1, 111, 1)[0].reason == Reason.OUTSIDE_PRICE_BAND


def test_replace_that_crosses_own_orders_cancels_them(engine, alice, bob):
    alice.sell(10, 110)  # 1
    bob.sell(10, 110)  # 2
    alice.buy(20, 100)  # 3
    events = alice.replace(3, 110, 20)
    assert kinds(events) == ["OrderReplaced", "OrderCancelled", "Trade"]
    assert (events[1].order_id, events[1].reason) == (1, Reason.SELF_TRADE)
    assert events[2].maker_order_id == 2
    assert engine.depth(SYMBOL)["bids"] == [[110, 10, 1]]
