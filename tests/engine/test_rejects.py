"""Every reject reason of PlaceOrder and CancelOrder; a rejection changes nothing."""

from __future__ import annotations

import pytest

from nodes.engine import (
    CancelOrder,
    InstrumentStatus,
    OrderRejected,
    OrderType,
    PlaceOrder,
    Reason,
    Side,
    TimeInForce,
)
from tests.engine.conftest import SYMBOL, Operator, kinds

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET = OrderType.LIMIT, OrderType.MARKET
GTC, IOC, FOK = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"symbol": "NOPE"}, Reason.UNKNOWN_INSTRUMENT),
        ({"price": 101}, Reason.BAD_TICK),
        ({"qty": 15}, Reason.BAD_LOT),
        ({"qty": 0}, Reason.INVALID_COMMAND),
        ({"qty": -10}, Reason.INVALID_COMMAND),
        ({"price": 0}, Reason.INVALID_COMMAND),
        ({"price": -5}, Reason.INVALID_COMMAND),
        ({"side": 3}, Reason.INVALID_COMMAND),
        ({"tif": 9}, Reason.INVALID_COMMAND),
        ({"order_type": 7}, Reason.INVALID_COMMAND),
        ({"post_only": True, "tif": IOC}, Reason.INVALID_COMMAND),
        ({"order_type": MARKET, "price": 0, "tif": GTC}, Reason.INVALID_COMMAND),
        ({"order_type": MARKET, "price": 100, "tif": IOC}, Reason.INVALID_COMMAND),
        ({"order_type": MARKET, "price": 0, "tif": IOC, "post_only": True}, Reason.INVALID_COMMAND),
    ],
)
def test_place_rejects(engine, fields, reason):
    values = {
        "account": "alice",
        "symbol": SYMBOL,
        "side": BUY,
        "qty": 10,
        "price": 100,
        "order_type": LIMIT,
        "tif": GTC,
        "post_only": False,
    } | fields
    digest = engine.digest()
    events = engine.process(PlaceOrder("alice", 1, **values))
    assert kinds(events) == ["OrderRejected"]
    assert events[0].reason == reason
    assert events[0].order_id == 0
    assert engine.depth(SYMBOL)["bids"] == []
    assert engine.order_status(1) is None  # no order id was used up
    assert engine.digest() != digest  # position and the client's sequence moved on


def test_price_band(engine):
    ops = Operator(engine, "ops2")
    ops.add("BAND", tick=1, lot=1, band_low=90, band_high=110)
    rejected = engine.process(PlaceOrder("a", 1, "a", "BAND", BUY, 1, 89))
    assert rejected[0].reason == Reason.OUTSIDE_PRICE_BAND
    assert engine.process(PlaceOrder("a", 2, "a", "BAND", BUY, 1, 111))[0].reason == (
        Reason.OUTSIDE_PRICE_BAND
    )
    assert kinds(engine.process(PlaceOrder("a", 3, "a", "BAND", BUY, 1, 90))) == ["OrderAccepted"]
    assert kinds(engine.process(PlaceOrder("a", 4, "a", "BAND", SELL, 1, 110))) == ["OrderAccepted"]


def test_halted_instrument_rejects_orders_and_cancels(engine, ops, alice):
    alice.buy(10, 100)
    ops.set_status(InstrumentStatus.HALTED)
    assert alice.buy(10, 100)[0].reason == Reason.INSTRUMENT_HALTED
    assert alice.cancel(1)[0].reason == Reason.INSTRUMENT_HALTED
    assert alice.replace(1, 100, 5)[0].reason == Reason.INSTRUMENT_HALTED
    ops.set_status(InstrumentStatus.OPEN)
    assert kinds(alice.cancel(1)) == ["OrderCancelled"]


def test_cancel_only_instrument_accepts_cancels_only(engine, ops, alice):
    alice.buy(10, 100)
    alice.buy(10, 95)
    ops.set_status(InstrumentStatus.CANCEL_ONLY)
    assert alice.buy(10, 100)[0].reason == Reason.INSTRUMENT_CANCEL_ONLY
    assert alice.replace(1, 100, 5)[0].reason == Reason.INSTRUMENT_CANCEL_ONLY
    assert kinds(alice.cancel(1)) == ["OrderCancelled"]


def test_cancel_rejects(engine, alice, bob):
    alice.buy(10, 100)
    unknown = bob.cancel(42)[0]
    assert isinstance(unknown, OrderRejected)
    assert (unknown.reason, unknown.order_id) == (Reason.UNKNOWN_ORDER, 42)
    assert bob.cancel(1)[0].reason == Reason.NOT_ORDER_OWNER
    alice.cancel(1)
    assert alice.cancel(1)[0].reason == Reason.UNKNOWN_ORDER


def test_cancel_of_a_filled_order_is_unknown(engine, alice, bob):
    alice.sell(10, 100)
    bob.buy(10, 100)
    assert alice.cancel(1)[0].reason == Reason.UNKNOWN_ORDER


def test_cancel_carries_its_account(engine):
    events = engine.process(CancelOrder("alice", 1, "alice", 1))
    assert events[0].reason == Reason.UNKNOWN_ORDER


def test_empty_client_id_or_bad_sequence(engine):
    for cid, seq in (("", 1), ("alice", 0), ("alice", -1)):
        events = engine.process(PlaceOrder(cid, seq, "alice", SYMBOL, BUY, 10, 100))
        assert events[0].reason == Reason.INVALID_SEQUENCE
    # the sequence was not consumed: seq 1 is still new for alice
    assert kinds(engine.process(PlaceOrder("alice", 1, "alice", SYMBOL, BUY, 10, 100))) == [
        "OrderAccepted"
    ]
