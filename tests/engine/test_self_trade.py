"""Self-trade prevention: an order never trades with its own account's resting orders."""

from __future__ import annotations

from nodes.engine import OrderCancelled, Reason, TimeInForce, Trade
from tests.engine.conftest import SYMBOL, Trader, kinds, replay


def test_resting_order_of_same_account_is_cancelled_and_matching_goes_on(engine, alice, bob):
    alice.sell(10, 100)  # 1
    bob.sell(10, 100)  # 2
    events = alice.buy(10, 100)
    assert kinds(events) == ["OrderAccepted", "OrderCancelled", "Trade"]
    cancel = events[1]
    assert isinstance(cancel, OrderCancelled)
    assert (cancel.order_id, cancel.reason, cancel.qty) == (1, Reason.SELF_TRADE, 10)
    assert events[2].maker_order_id == 2
    assert engine.depth(SYMBOL)["asks"] == []


def test_incoming_rests_after_cancelling_its_own_crossing_orders(engine, alice):
    alice.sell(10, 100)
    events = alice.buy(20, 100)
    assert kinds(events) == ["OrderAccepted", "OrderCancelled"]
    assert engine.depth(SYMBOL) | {"position": 0} == {
        "symbol": SYMBOL,
        "status": "open",
        "position": 0,
        "bids": [[100, 20, 1]],
        "asks": [],
    }


def test_two_clients_of_one_account_do_not_trade(engine):
    desk1 = Trader(engine, "desk-1", account="fund")
    desk2 = Trader(engine, "desk-2", account="fund")
    desk1.sell(10, 100)
    events = desk2.buy(10, 100, tif=TimeInForce.IOC)
    assert kinds(events) == ["OrderAccepted", "OrderCancelled", "OrderCancelled"]
    assert [e.reason for e in events[1:]] == [Reason.SELF_TRADE, Reason.UNFILLED]
    assert not [e for e in events if isinstance(e, Trade)]


def test_self_trade_cancels_replay_identically(engine, alice, bob):
    alice.sell(10, 100)
    bob.sell(10, 105)
    alice.buy(30, 105)
    follower = replay(engine.log)
    assert follower.digest() == engine.digest()
    assert follower.depth(SYMBOL) == engine.depth(SYMBOL)
