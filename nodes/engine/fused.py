"""The leader's fused paths: handle + apply in one pass for the two commonest commands.

A GTC limit order that rests without trading and a cancel that succeeds produce the
same events and leave the same state as ``handle`` then ``apply_batch`` (a property test
checks it); each returns None when its command is not such a case, and ``Engine.process``
then goes the long way.
"""

from __future__ import annotations

from nodes.engine.applying import unlink
from nodes.engine.base import EngineState
from nodes.engine.book import Order
from nodes.engine.clients import open_single
from nodes.engine.commands import CancelOrder, PlaceOrder
from nodes.engine.events import Event, OrderAccepted, OrderCancelled
from nodes.engine.matching import R_REQUESTED
from nodes.engine.types import BUY, GTC, HALTED, LIMIT, MAX_SEQ, OPEN, SELL


def process_resting_order(engine: EngineState, c: PlaceOrder) -> list[Event] | None:
    """Fused handle+apply of a valid GTC limit order that rests without trading."""
    if c.tif != GTC or c.order_type != LIMIT:
        return None
    cid = c.client_id
    seq = c.client_seq
    client = engine._clients.get(cid)
    book = engine._books.get(c.symbol)
    price = c.price
    qty = c.qty
    if not (
        cid
        and 1 <= seq <= MAX_SEQ
        and (client is None or seq > client[0])
        and book is not None
        and book.status == OPEN
        and qty > 0
        and not price % book.tick_size
        and not qty % book.lot_size
        and book.min_price <= price <= book.max_price
        and engine._incoming is None
    ):
        return None
    side = c.side
    sides = book.sides
    if side == BUY:
        keys = sides[SELL].keys
        if keys and keys[-1] >= -price:
            return None
        key = price
    elif side == SELL:
        keys = sides[BUY].keys
        if keys and keys[-1] >= price:
            return None
        key = -price
    else:
        return None
    ts = c.timestamp
    order_id = engine._last_order_id + 1
    event = OrderAccepted(
        cid, seq, ts, order_id, c.symbol, c.account, side, c.order_type, price, qty, c.tif,
        c.post_only,
    )  # fmt: skip
    engine.position = position = engine.position + 1
    engine._last_order_id = order_id
    order = Order(
        order_id, c.account, side, price, qty, 0, c.tif, c.order_type, c.post_only, c.symbol
    )
    own = sides[side]
    level = own.levels.get(key)
    if level is None:
        own.add(order)
    else:
        level.orders.append(order)
        level.qty += qty
        level.count += 1
        order.level = level
    engine._orders[order_id] = order
    # what apply_batch records for the first event of a new command's result
    open_single(engine, client, cid, seq, position)
    engine._pending.append(event)  # for the running hash
    return [event]


def process_cancel(engine: EngineState, c: CancelOrder) -> list[Event] | None:
    """Fused handle+apply of a cancel that succeeds."""
    cid = c.client_id
    seq = c.client_seq
    client = engine._clients.get(cid)
    order_id = c.order_id
    order = engine._orders.get(order_id)
    if not (
        cid
        and 1 <= seq <= MAX_SEQ
        and (client is None or seq > client[0])
        and order is not None
        and order.account == c.account
        and engine._books[order.symbol].status != HALTED
        and engine._incoming is None
    ):
        return None
    ts = c.timestamp
    qty = order.remaining
    event = OrderCancelled(cid, seq, ts, order_id, order.symbol, R_REQUESTED, qty)
    engine.position = position = engine.position + 1
    del engine._orders[order_id]
    unlink(engine, order)
    # what apply_batch records for the first event of a new command's result
    open_single(engine, client, cid, seq, position)
    engine._pending.append(event)  # for the running hash
    return [event]
