"""Matching: what a command produces against the current book (handle; changes nothing).

Each ``handle_*`` function takes the engine and a validated-sequence command and returns
its events; ``Engine.handle`` checks the client's sequence first and dispatches here.
Matching is price-time priority at the resting order's price; an incoming order never
trades with its own account (the resting order is cancelled with ``SELF_TRADE``).
"""

from __future__ import annotations

from nodes.engine.base import EngineState
from nodes.engine.book import BookSide
from nodes.engine.commands import (
    AddInstrument,
    CancelOrder,
    PlaceOrder,
    ReplaceOrder,
    SetInstrumentStatus,
)
from nodes.engine.events import (
    Event,
    InstrumentAdded,
    InstrumentStatusChanged,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    OrderReplaced,
    Trade,
)
from nodes.engine.types import (
    BUY,
    CANCEL_ONLY,
    FOK,
    GTC,
    HALTED,
    LIMIT,
    MARKET,
    OPEN,
    SELL,
    Reason,
)

R_INVALID_COMMAND = int(Reason.INVALID_COMMAND)
R_UNKNOWN_INSTRUMENT = int(Reason.UNKNOWN_INSTRUMENT)
R_INSTRUMENT_EXISTS = int(Reason.INSTRUMENT_EXISTS)
R_INSTRUMENT_HALTED = int(Reason.INSTRUMENT_HALTED)
R_BAD_TICK = int(Reason.BAD_TICK)
R_BAD_LOT = int(Reason.BAD_LOT)
R_OUTSIDE_PRICE_BAND = int(Reason.OUTSIDE_PRICE_BAND)
R_UNKNOWN_ORDER = int(Reason.UNKNOWN_ORDER)
R_NOT_ORDER_OWNER = int(Reason.NOT_ORDER_OWNER)
R_FOK_NOT_FILLABLE = int(Reason.FOK_NOT_FILLABLE)
R_POST_ONLY_WOULD_CROSS = int(Reason.POST_ONLY_WOULD_CROSS)
R_REQUESTED = int(Reason.REQUESTED)
R_UNFILLED = int(Reason.UNFILLED)
R_SELF_TRADE = int(Reason.SELF_TRADE)

# The limit key of a market order: every opposite level crosses it.
NO_LIMIT = -(1 << 80)

_STATUS_REJECT = {HALTED: R_INSTRUMENT_HALTED, CANCEL_ONLY: int(Reason.INSTRUMENT_CANCEL_ONLY)}


def handle_place(engine: EngineState, c: PlaceOrder, cid: str, seq: int, ts: int) -> list[Event]:
    book = engine._books.get(c.symbol)
    if book is None:
        return [OrderRejected(cid, seq, ts, R_UNKNOWN_INSTRUMENT, 0)]
    if book.status != OPEN:
        return [OrderRejected(cid, seq, ts, _STATUS_REJECT[book.status], 0)]
    side = c.side
    qty = c.qty
    tif = c.tif
    price = c.price
    post_only = c.post_only
    if (side != BUY and side != SELL) or qty <= 0 or tif < GTC or tif > FOK:
        return [OrderRejected(cid, seq, ts, R_INVALID_COMMAND, 0)]
    if c.order_type == LIMIT:
        if price <= 0 or (post_only and tif != GTC):
            return [OrderRejected(cid, seq, ts, R_INVALID_COMMAND, 0)]
        if price % book.tick_size:
            return [OrderRejected(cid, seq, ts, R_BAD_TICK, 0)]
        if not book.min_price <= price <= book.max_price:
            return [OrderRejected(cid, seq, ts, R_OUTSIDE_PRICE_BAND, 0)]
        limit_key = -price if side == BUY else price
    elif c.order_type == MARKET:
        if price != 0 or tif == GTC or post_only:
            return [OrderRejected(cid, seq, ts, R_INVALID_COMMAND, 0)]
        limit_key = NO_LIMIT
    else:
        return [OrderRejected(cid, seq, ts, R_INVALID_COMMAND, 0)]
    if qty % book.lot_size:
        return [OrderRejected(cid, seq, ts, R_BAD_LOT, 0)]

    symbol = c.symbol
    order_id = engine._last_order_id + 1
    accepted = OrderAccepted(
        cid, seq, ts, order_id, symbol, c.account, side, c.order_type, price, qty, tif,
        post_only,
    )  # fmt: skip
    opposite = book.sides[3 - side]
    keys = opposite.keys
    if not keys or keys[-1] < limit_key:  # nothing to trade with
        if tif == GTC:
            return [accepted]
        if tif == FOK:
            return [OrderRejected(cid, seq, ts, R_FOK_NOT_FILLABLE, 0)]
        return [accepted, OrderCancelled(cid, seq, ts, order_id, symbol, R_UNFILLED, qty)]
    if post_only:
        return [OrderRejected(cid, seq, ts, R_POST_ONLY_WOULD_CROSS, 0)]
    if tif == FOK and not fillable(opposite, limit_key, c.account, qty):
        return [OrderRejected(cid, seq, ts, R_FOK_NOT_FILLABLE, 0)]
    events: list[Event] = [accepted]
    left = match_orders(
        events, opposite, limit_key, side, order_id, c.account, qty, symbol, cid, seq, ts
    )
    if left and tif != GTC:
        events.append(OrderCancelled(cid, seq, ts, order_id, symbol, R_UNFILLED, left))
    return events


def handle_cancel(engine: EngineState, c: CancelOrder, cid: str, seq: int, ts: int) -> list[Event]:
    order = engine._orders.get(c.order_id)
    if order is None:
        return [OrderRejected(cid, seq, ts, R_UNKNOWN_ORDER, c.order_id)]
    if order.account != c.account:
        return [OrderRejected(cid, seq, ts, R_NOT_ORDER_OWNER, c.order_id)]
    if engine._books[order.symbol].status == HALTED:
        return [OrderRejected(cid, seq, ts, R_INSTRUMENT_HALTED, c.order_id)]
    return [
        OrderCancelled(cid, seq, ts, order.order_id, order.symbol, R_REQUESTED, order.remaining)
    ]


def handle_replace(
    engine: EngineState, c: ReplaceOrder, cid: str, seq: int, ts: int
) -> list[Event]:
    order_id = c.order_id
    order = engine._orders.get(order_id)
    if order is None:
        return [OrderRejected(cid, seq, ts, R_UNKNOWN_ORDER, order_id)]
    if order.account != c.account:
        return [OrderRejected(cid, seq, ts, R_NOT_ORDER_OWNER, order_id)]
    book = engine._books[order.symbol]
    if book.status != OPEN:
        return [OrderRejected(cid, seq, ts, _STATUS_REJECT[book.status], order_id)]
    price = c.price
    qty = c.qty
    if price <= 0 or qty <= 0:
        return [OrderRejected(cid, seq, ts, R_INVALID_COMMAND, order_id)]
    if price % book.tick_size:
        return [OrderRejected(cid, seq, ts, R_BAD_TICK, order_id)]
    if qty % book.lot_size:
        return [OrderRejected(cid, seq, ts, R_BAD_LOT, order_id)]
    if not book.min_price <= price <= book.max_price:
        return [OrderRejected(cid, seq, ts, R_OUTSIDE_PRICE_BAND, order_id)]
    symbol = order.symbol
    if price == order.price and qty <= order.remaining:
        return [OrderReplaced(cid, seq, ts, order_id, symbol, price, qty, True)]
    replaced = OrderReplaced(cid, seq, ts, order_id, symbol, price, qty, False)
    side = order.side
    limit_key = -price if side == BUY else price
    opposite = book.sides[3 - side]
    keys = opposite.keys
    if not keys or keys[-1] < limit_key:
        return [replaced]
    if order.post_only:
        return [OrderRejected(cid, seq, ts, R_POST_ONLY_WOULD_CROSS, order_id)]
    events: list[Event] = [replaced]
    match_orders(
        events, opposite, limit_key, side, order_id, order.account, qty, symbol, cid, seq, ts
    )
    return events


def handle_add_instrument(
    engine: EngineState, c: AddInstrument, cid: str, seq: int, ts: int
) -> list[Event]:
    if c.symbol in engine._books:
        return [OrderRejected(cid, seq, ts, R_INSTRUMENT_EXISTS, 0)]
    low, high = c.band_low, c.band_high
    if (
        not c.symbol
        or c.tick_size < 1
        or c.lot_size < 1
        or (low is not None and low < 1)
        or (high is not None and high < 1)
        or (low is not None and high is not None and low > high)
    ):
        return [OrderRejected(cid, seq, ts, R_INVALID_COMMAND, 0)]
    return [InstrumentAdded(cid, seq, ts, c.symbol, c.tick_size, c.lot_size, low, high)]


def handle_set_status(
    engine: EngineState, c: SetInstrumentStatus, cid: str, seq: int, ts: int
) -> list[Event]:
    if c.symbol not in engine._books:
        return [OrderRejected(cid, seq, ts, R_UNKNOWN_INSTRUMENT, 0)]
    if c.status not in (OPEN, HALTED, CANCEL_ONLY):
        return [OrderRejected(cid, seq, ts, R_INVALID_COMMAND, 0)]
    return [InstrumentStatusChanged(cid, seq, ts, c.symbol, c.status)]


def fillable(opposite: BookSide, limit_key: int, account: str, qty: int) -> bool:
    """Whether ``qty`` can trade now against other accounts' orders (for FOK)."""
    levels = opposite.levels
    for key in reversed(opposite.keys):
        if key < limit_key:
            return False
        for o in levels[key].orders:
            if o.remaining and o.account != account:
                qty -= o.remaining
                if qty <= 0:
                    return True
    return False


def match_orders(
    events: list[Event],
    opposite: BookSide,
    limit_key: int,
    side: int,
    order_id: int,
    account: str,
    qty: int,
    symbol: str,
    cid: str,
    seq: int,
    ts: int,
) -> int:
    """Appends the trades (and self-trade cancels) of an incoming order against the
    current book without changing it; returns the quantity left over."""
    levels = opposite.levels
    keys = opposite.keys
    for i in range(len(keys) - 1, -1, -1):
        key = keys[i]
        if key < limit_key:
            break
        level = levels[key]
        price = level.price
        for o in level.orders:
            rest = o.remaining
            if not rest:
                continue
            if o.account == account:
                events.append(OrderCancelled(cid, seq, ts, o.order_id, symbol, R_SELF_TRADE, rest))
                continue
            if rest >= qty:
                events.append(
                    Trade(
                        cid, seq, ts, symbol, price, qty, side, o.order_id, order_id, rest - qty, 0
                    )
                )
                return 0
            qty -= rest
            events.append(
                Trade(cid, seq, ts, symbol, price, rest, side, o.order_id, order_id, 0, qty)
            )
    return qty
