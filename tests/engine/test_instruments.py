"""Instruments are replicated state: added by a command, with a trading status."""

from __future__ import annotations

from nodes.engine import Engine, InstrumentStatus, Reason
from tests.engine.conftest import SYMBOL, Operator, kinds


def test_add_instrument():
    engine = Engine()
    events = Operator(engine, "ops").add("XYZ", tick=5, lot=100, band_low=100, band_high=900)
    assert kinds(events) == ["InstrumentAdded"]
    assert engine.instrument("XYZ") == {
        "symbol": "XYZ",
        "tick_size": 5,
        "lot_size": 100,
        "band_low": 100,
        "band_high": 900,
        "status": "open",
    }
    assert engine.symbols() == ["XYZ"]


def test_add_twice_is_rejected(engine, ops):
    assert ops.add()[0].reason == Reason.INSTRUMENT_EXISTS


def test_add_with_bad_rules_is_rejected(engine, ops):
    assert ops.add("A", tick=0)[0].reason == Reason.INVALID_COMMAND
    assert ops.add("B", lot=-1)[0].reason == Reason.INVALID_COMMAND
    assert ops.add("C", band_low=10, band_high=5)[0].reason == Reason.INVALID_COMMAND
    assert ops.add("")[0].reason == Reason.INVALID_COMMAND
    assert engine.symbols() == [SYMBOL]


def test_status_change(engine, ops):
    events = ops.set_status(InstrumentStatus.CANCEL_ONLY)
    assert kinds(events) == ["InstrumentStatusChanged"]
    assert engine.instrument(SYMBOL)["status"] == "cancel_only"
    assert engine.depth(SYMBOL)["status"] == "cancel_only"


def test_status_change_rejects(engine, ops):
    assert ops.set_status(InstrumentStatus.HALTED, symbol="NOPE")[0].reason == (
        Reason.UNKNOWN_INSTRUMENT
    )
    assert ops.set_status(9)[0].reason == Reason.INVALID_COMMAND


def test_instruments_are_independent(engine, ops, alice, bob):
    ops.add("OTHER")
    alice.sell(10, 100, symbol="OTHER")
    events = bob.buy(10, 100)
    assert kinds(events) == ["OrderAccepted"]
    assert engine.depth("OTHER")["asks"] == [[100, 10, 1]]
    assert engine.depth(SYMBOL)["bids"] == [[100, 10, 1]]
