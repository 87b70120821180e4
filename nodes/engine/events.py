"""Events: the facts the engine emits; applying them in log order rebuilds the state.

Every event carries the ``client_id``, ``client_seq`` and ``timestamp`` of the command
that produced it, so the first event of a result tells a runtime which command it
answers, and a follower never needs a clock. Each class has a small, stable ``KIND``.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

from nodes.engine.commands import CODEC_VERSION
from nodes.engine.types import EventKind


def _tag(kind: int) -> int:
    return CODEC_VERSION << 8 | kind


class Event(msgspec.Struct, array_like=True, gc=False, frozen=True):
    client_id: str
    client_seq: int
    timestamp: int

    KIND: ClassVar[int] = 0


class InstrumentAdded(Event, tag=_tag(EventKind.INSTRUMENT_ADDED)):
    symbol: str
    tick_size: int
    lot_size: int
    band_low: int | None
    band_high: int | None

    KIND: ClassVar[int] = int(EventKind.INSTRUMENT_ADDED)


class InstrumentStatusChanged(Event, tag=_tag(EventKind.INSTRUMENT_STATUS_CHANGED)):
    symbol: str
    status: int

    KIND: ClassVar[int] = int(EventKind.INSTRUMENT_STATUS_CHANGED)


class OrderAccepted(Event, tag=_tag(EventKind.ORDER_ACCEPTED)):
    """A new order passed validation; trades and cancellations may follow in the same
    result. A GTC limit order rests with whatever is left once it no longer crosses."""

    order_id: int
    symbol: str
    account: str
    side: int
    order_type: int
    price: int
    qty: int
    tif: int
    post_only: bool

    KIND: ClassVar[int] = int(EventKind.ORDER_ACCEPTED)


class OrderRejected(Event, tag=_tag(EventKind.ORDER_REJECTED)):
    """The command had no effect. ``order_id`` is the order it named (0 if none)."""

    reason: int
    order_id: int

    KIND: ClassVar[int] = int(EventKind.ORDER_REJECTED)


class Trade(Event, tag=_tag(EventKind.TRADE)):
    """The incoming (taker) order traded with a resting (maker) order at the maker's
    price; ``*_remaining`` are the open quantities of both orders after the trade."""

    symbol: str
    price: int
    qty: int
    taker_side: int
    maker_order_id: int
    taker_order_id: int
    maker_remaining: int
    taker_remaining: int

    KIND: ClassVar[int] = int(EventKind.TRADE)


class OrderCancelled(Event, tag=_tag(EventKind.ORDER_CANCELLED)):
    """An order left the book (or an incoming order's rest was dropped); ``qty`` is the
    open quantity that was cancelled, ``reason`` a ``Reason`` cancellation code."""

    order_id: int
    symbol: str
    reason: int
    qty: int

    KIND: ClassVar[int] = int(EventKind.ORDER_CANCELLED)


class OrderReplaced(Event, tag=_tag(EventKind.ORDER_REPLACED)):
    """A resting order got a new price and open quantity. Without ``priority_kept`` it
    re-enters the book as if new (and may trade, with Trade events following)."""

    order_id: int
    symbol: str
    price: int
    qty: int
    priority_kept: bool

    KIND: ClassVar[int] = int(EventKind.ORDER_REPLACED)


class CommandDuplicate(Event, tag=_tag(EventKind.COMMAND_DUPLICATE)):
    """The command was processed before: its result is the ``original_count`` events
    starting at log position ``original_position``. Nothing changed this time."""

    original_position: int
    original_count: int

    KIND: ClassVar[int] = int(EventKind.COMMAND_DUPLICATE)


EVENT_TYPES: tuple[type[Event], ...] = (
    InstrumentAdded,
    InstrumentStatusChanged,
    OrderAccepted,
    OrderRejected,
    Trade,
    OrderCancelled,
    OrderReplaced,
    CommandDuplicate,
)
EVENT_KINDS: dict[int, type[Event]] = {e.KIND: e for e in EVENT_TYPES}


def event_kind(event: Event) -> int:
    """The small integer code of an event's type (stable; see ``EVENT_KINDS``)."""
    return event.KIND
