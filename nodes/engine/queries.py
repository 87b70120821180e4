"""Read-only queries of the engine's state, JSON-friendly (the node answers them)."""

from __future__ import annotations

from nodes.engine.base import EngineState
from nodes.engine.book import BookSide
from nodes.engine.types import BUY, SELL, InstrumentStatus, Side, TimeInForce


def _status_name(status: int) -> str:
    return InstrumentStatus(status).name.lower()


def symbols(engine: EngineState) -> list[str]:
    return sorted(engine._books)


def instrument(engine: EngineState, symbol: str) -> dict | None:
    """An instrument's trading rules and status, JSON-friendly; None if unknown."""
    book = engine._books.get(symbol)
    if book is None:
        return None
    return {
        "symbol": book.symbol,
        "tick_size": book.tick_size,
        "lot_size": book.lot_size,
        "band_low": book.band_low,
        "band_high": book.band_high,
        "status": _status_name(book.status),
    }


def depth(engine: EngineState, symbol: str, levels: int = 10) -> dict | None:
    """Aggregated book: ``bids``/``asks`` as ``[price, qty, order count]`` lists,
    best first, at most ``levels`` each. None for an unknown symbol."""
    book = engine._books.get(symbol)
    if book is None:
        return None

    def side_depth(side: BookSide) -> list[list[int]]:
        keys = side.keys
        out = []
        for key in keys[: -levels - 1 : -1] if levels > 0 else ():
            level = side.levels[key]
            out.append([level.price, level.qty, level.count])
        return out

    return {
        "symbol": symbol,
        "status": _status_name(book.status),
        "position": engine.position,
        "bids": side_depth(book.sides[BUY]),
        "asks": side_depth(book.sides[SELL]),
    }


def order_status(engine: EngineState, order_id: int) -> dict | None:
    """A resting order's state; ``{"order_id", "status": "closed"}`` for an order
    that was filled, cancelled or never rested (the event log has its history);
    None for an id the engine never assigned."""
    order = engine._orders.get(order_id)
    if order is None:
        if isinstance(order_id, int) and 0 < order_id <= engine._last_order_id:
            return {"order_id": order_id, "status": "closed"}
        return None
    return {
        "order_id": order.order_id,
        "symbol": order.symbol,
        "account": order.account,
        "side": Side(order.side).name.lower(),
        "price": order.price,
        "open_qty": order.remaining,
        "filled_qty": order.filled,
        "tif": TimeInForce(order.tif).name,
        "post_only": order.post_only,
        "status": "partially_filled" if order.filled else "open",
    }
