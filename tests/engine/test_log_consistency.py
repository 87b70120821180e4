"""Applying events that do not fit the state fails loudly (a corrupt or foreign log)."""

from __future__ import annotations

import pytest

from nodes.engine import (
    Engine,
    EngineError,
    InstrumentAdded,
    OrderAccepted,
    Trade,
)


def listed() -> Engine:
    engine = Engine()
    engine.apply(InstrumentAdded("ops", 1, 0, "X", 1, 1, None, None))
    return engine


def test_order_ids_must_follow_each_other():
    engine = listed()
    with pytest.raises(EngineError, match="out of sequence"):
        engine.apply(OrderAccepted("c", 1, 0, 5, "X", "a", 1, 1, 100, 1, 1, False))


def test_client_sequences_must_grow():
    engine = listed()
    engine.apply(OrderAccepted("c", 5, 0, 1, "X", "a", 1, 1, 100, 1, 1, False))
    with pytest.raises(EngineError, match="not above"):
        engine.apply(OrderAccepted("c", 4, 0, 2, "X", "a", 1, 1, 100, 1, 1, False))


def test_a_trade_needs_an_incoming_taker():
    engine = listed()
    engine.apply(OrderAccepted("c", 1, 0, 1, "X", "a", 2, 1, 100, 1, 1, False))
    with pytest.raises(EngineError, match="taker"):
        engine.apply(Trade("d", 1, 0, "X", 100, 1, 1, 1, 2, 0, 0))


def test_an_instrument_is_added_once():
    engine = listed()
    with pytest.raises(EngineError, match="exists"):
        engine.apply(InstrumentAdded("ops", 2, 0, "X", 1, 1, None, None))
