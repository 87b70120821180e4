"""Applying events: the only way the engine's state changes (the follower's whole job).

``apply_batch`` is the follower's hot loop (the common kinds inline, the state's dicts in
locals); the rarer kinds go through the ``apply_*`` functions. Every applied event
advances ``position`` by one, is queued for the running hash (``statehash``) and is
counted into its command's result in the client's dedup window (``clients``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from nodes.engine.base import EngineState
from nodes.engine.book import Book, Order
from nodes.engine.clients import UNRECORDED, open_single
from nodes.engine.events import (
    CommandDuplicate,
    Event,
    InstrumentAdded,
    InstrumentStatusChanged,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    OrderReplaced,
    Trade,
)
from nodes.engine.statehash import FOLD_AT
from nodes.engine.types import BUY, GTC


class EngineError(RuntimeError):
    """An event does not fit the state it is applied to (corrupt or foreign log)."""


def apply_batch(engine: EngineState, events: Iterable[Event]) -> None:
    """Applies events in order (the follower's path); same as ``apply`` one by one."""
    if type(events) is not list and type(events) is not tuple:
        events = list(events)  # iterated twice: applied, then queued for the hash
    apply_events(engine, events)
    pending = engine._pending
    pending.extend(events)
    if len(pending) >= FOLD_AT:
        engine.fold_hash()


def apply_events(engine: EngineState, events: list[Event] | tuple[Event, ...]) -> None:
    """The follower's hot loop, without the running hash (the caller folds it): the
    common kinds are handled inline, with the state's dicts in locals."""
    books = engine._books
    orders_by_id = engine._orders
    clients = engine._clients
    appliers = engine._appliers
    for event in events:
        engine.position = position = engine.position + 1
        kind = type(event)
        if kind is OrderAccepted:
            order_id = event.order_id
            if order_id != engine._last_order_id + 1:
                raise EngineError(f"event at {position}: order id {order_id} out of sequence")
            engine._last_order_id = order_id
            price = event.price
            side = event.side
            qty = event.qty
            order = Order(
                order_id, event.account, side, price, qty, 0, event.tif, event.order_type,
                event.post_only, event.symbol,
            )  # fmt: skip
            if event.tif == GTC:
                sides = books[event.symbol].sides
                keys = sides[3 - side].keys
                if side == BUY:
                    key = price
                    crossed = keys and keys[-1] >= -price
                else:
                    key = -price
                    crossed = keys and keys[-1] >= price
                if crossed:
                    engine._incoming = order
                else:
                    own = sides[side]
                    level = own.levels.get(key)
                    if level is None:
                        own.add(order)
                    else:
                        level.orders.append(order)
                        level.qty += qty
                        level.count += 1
                        order.level = level
                    orders_by_id[order_id] = order
            else:
                engine._incoming = order
        elif kind is OrderCancelled:
            apply_cancelled(engine, event)
        elif kind is Trade:
            taker = engine._incoming
            if taker is None or taker.order_id != event.taker_order_id:
                raise EngineError(f"event at {position}: trade for a taker that is not incoming")
            qty = event.qty
            maker = orders_by_id[event.maker_order_id]
            maker.remaining = left = event.maker_remaining
            maker.filled += qty
            level = maker.level
            level.qty -= qty
            if not left:
                del orders_by_id[maker.order_id]
                level.count -= 1
                if level.count:
                    orders = level.orders
                    while not orders[0].remaining:
                        orders.popleft()
                else:
                    books[event.symbol].sides[maker.side].drop(level)
            taker.remaining = event.taker_remaining
            taker.filled += qty
            if not taker.remaining:
                engine._incoming = None
            elif taker.tif == GTC:
                rest_if_uncrossed(engine, taker)
        else:
            appliers[kind](engine, event)

        # which command's result is this event part of (for duplicate answers)
        seq = event.client_seq
        cid = event.client_id
        if seq == engine._open_seq and cid == engine._open_cid:
            engine._open_ring[engine._open_slot] += 1
        elif kind is CommandDuplicate or (kind is OrderRejected and event.reason in UNRECORDED):
            engine._open_cid = None  # answered without consuming the client's sequence
        else:
            client = clients.get(cid)
            if client is not None and seq <= client[0]:
                raise EngineError(
                    f"event at {position}: client {cid!r} seq {seq} is not above {client[0]}"
                )
            open_single(engine, client, cid, seq, position)


def apply_duplicate(engine: EngineState, e: CommandDuplicate) -> None:
    engine._open_cid = None  # a duplicate is never part of the original's result
    engine._open_seq = 0


def apply_rejected(engine: EngineState, e: OrderRejected) -> None:
    if e.reason in UNRECORDED:
        engine._open_cid = None
        engine._open_seq = 0


def rest_if_uncrossed(engine: EngineState, order: Order) -> None:
    book = engine._books[order.symbol]
    keys = book.sides[3 - order.side].keys
    if not keys or keys[-1] < (-order.price if order.side == BUY else order.price):
        book.sides[order.side].add(order)
        engine._orders[order.order_id] = order
        engine._incoming = None


def apply_cancelled(engine: EngineState, e: OrderCancelled) -> None:
    order_id = e.order_id
    incoming = engine._incoming
    if incoming is not None and incoming.order_id == order_id:
        engine._incoming = None
        return
    order = engine._orders.pop(order_id)
    unlink(engine, order)
    if incoming is not None and incoming.tif == GTC:
        rest_if_uncrossed(engine, incoming)  # a self-trade cancel may end the crossing


def unlink(engine: EngineState, order: Order) -> None:
    """Takes a resting order off its level (marked dead, dropped lazily)."""
    level = order.level
    level.qty -= order.remaining
    order.remaining = 0
    level.count -= 1
    if not level.count:
        engine._books[order.symbol].sides[order.side].drop(level)
        return
    orders = level.orders
    if orders[0] is order:
        while not orders[0].remaining:
            orders.popleft()
    elif len(orders) > 2 * level.count + 32:
        level.orders = deque(o for o in orders if o.remaining)


def apply_replaced(engine: EngineState, e: OrderReplaced) -> None:
    order = engine._orders[e.order_id]
    if e.priority_kept:
        order.level.qty += e.qty - order.remaining
        order.remaining = e.qty
        return
    del engine._orders[e.order_id]
    unlink(engine, order)
    new = Order(
        order.order_id, order.account, order.side, e.price, e.qty, order.filled, order.tif,
        order.order_type, order.post_only, order.symbol,
    )  # fmt: skip
    engine._incoming = new
    rest_if_uncrossed(engine, new)


def apply_instrument_added(engine: EngineState, e: InstrumentAdded) -> None:
    if e.symbol in engine._books:
        raise EngineError(f"event at {engine.position}: instrument {e.symbol!r} exists")
    engine._books[e.symbol] = Book(e.symbol, e.tick_size, e.lot_size, e.band_low, e.band_high)


def apply_status_changed(engine: EngineState, e: InstrumentStatusChanged) -> None:
    engine._books[e.symbol].status = e.status
