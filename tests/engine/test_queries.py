"""Operator queries: aggregated depth and an order's status, JSON-friendly."""

from __future__ import annotations

import json

from tests.engine.conftest import SYMBOL


def test_depth_aggregates_levels_best_first(engine, alice, bob):
    alice.buy(10, 100)
    bob.buy(20, 100)
    alice.buy(30, 95)
    alice.buy(10, 90)
    bob.sell(10, 110)
    bob.sell(10, 105)
    depth = engine.depth(SYMBOL)
    assert depth["bids"] == [[100, 30, 2], [95, 30, 1], [90, 10, 1]]
    assert depth["asks"] == [[105, 10, 1], [110, 10, 1]]
    assert depth["position"] == engine.position
    assert engine.depth(SYMBOL, levels=1)["bids"] == [[100, 30, 2]]
    assert engine.depth(SYMBOL, levels=0)["bids"] == []
    assert json.loads(json.dumps(depth)) == depth


def test_depth_of_unknown_symbol(engine):
    assert engine.depth("NOPE") is None


def test_order_status(engine, alice, bob):
    alice.buy(30, 100)
    bob.sell(10, 100)
    assert engine.order_status(1) == {
        "order_id": 1,
        "symbol": SYMBOL,
        "account": "alice",
        "side": "buy",
        "price": 100,
        "open_qty": 20,
        "filled_qty": 10,
        "tif": "GTC",
        "post_only": False,
        "status": "partially_filled",
    }
    assert engine.order_status(2) == {"order_id": 2, "status": "closed"}
    assert engine.order_status(3) is None
    assert engine.order_status(0) is None
