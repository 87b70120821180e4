"""Enumerations shared by commands, events and the book: sides, order types, reason codes.

Every value travels as a plain ``int`` inside commands and events (compact and fast to
encode); the ``IntEnum`` classes give the numbers their names for code, API and docs.
"""

from __future__ import annotations

from enum import IntEnum


class EventKind(IntEnum):
    """The stable code of each event type (``Event.KIND``, the low byte of its tag, the
    archive's ``kind`` column). Values are stored in the event log: never renumber."""

    INSTRUMENT_ADDED = 1
    INSTRUMENT_STATUS_CHANGED = 2
    ORDER_ACCEPTED = 3
    ORDER_REJECTED = 4
    TRADE = 5
    ORDER_CANCELLED = 6
    ORDER_REPLACED = 7
    COMMAND_DUPLICATE = 8


class CommandKind(IntEnum):
    """The stable code of each command type (``Command.KIND``, the low byte of its tag)."""

    ADD_INSTRUMENT = 1
    SET_INSTRUMENT_STATUS = 2
    PLACE_ORDER = 3
    CANCEL_ORDER = 4
    REPLACE_ORDER = 5


class Side(IntEnum):
    BUY = 1
    SELL = 2


class OrderType(IntEnum):
    LIMIT = 1
    MARKET = 2


class TimeInForce(IntEnum):
    GTC = 1  # good till cancelled: the unfilled rest stays on the book
    IOC = 2  # immediate or cancel: fill what is possible now, cancel the rest
    FOK = 3  # fill or kill: fill everything now or reject the whole order


class InstrumentStatus(IntEnum):
    OPEN = 1  # everything allowed
    HALTED = 2  # nothing allowed, not even cancels: the book is frozen
    CANCEL_ONLY = 3  # cancels allowed; new orders and replaces are rejected


class Reason(IntEnum):
    """Why a command was rejected (``OrderRejected.reason``) or an order cancelled
    (``OrderCancelled.reason``). Values are stable: they are stored in the event log."""

    # rejections
    INVALID_COMMAND = 1  # a field is out of range (side, type, tif, qty <= 0, price <= 0 ...)
    INVALID_SEQUENCE = 2  # client_id empty or client_seq < 1; not remembered as processed
    STALE_SEQUENCE = 3  # client_seq at or below the client's last, and not a remembered one
    UNKNOWN_INSTRUMENT = 4
    INSTRUMENT_EXISTS = 5
    INSTRUMENT_HALTED = 6
    INSTRUMENT_CANCEL_ONLY = 7
    BAD_TICK = 8  # price is not a multiple of the instrument's tick size
    BAD_LOT = 9  # quantity is not a multiple of the instrument's lot size
    OUTSIDE_PRICE_BAND = 10
    UNKNOWN_ORDER = 11  # no such resting order (never existed, filled or cancelled)
    NOT_ORDER_OWNER = 12  # the order belongs to another account
    FOK_NOT_FILLABLE = 13
    POST_ONLY_WOULD_CROSS = 14
    # cancellations
    REQUESTED = 20  # a CancelOrder command
    UNFILLED = 21  # the rest of an IOC or market order that found no more liquidity
    SELF_TRADE = 22  # resting order cancelled because an order of the same account hit it


# How many processed sequence numbers a client can re-send and get the original answer.
DEDUP_WINDOW = 1000

# Plain ints for the engine's hot paths: comparing an IntEnum member costs more than an int.
BUY = int(Side.BUY)
SELL = int(Side.SELL)
LIMIT = int(OrderType.LIMIT)
MARKET = int(OrderType.MARKET)
GTC = int(TimeInForce.GTC)
IOC = int(TimeInForce.IOC)
FOK = int(TimeInForce.FOK)
OPEN = int(InstrumentStatus.OPEN)
HALTED = int(InstrumentStatus.HALTED)
CANCEL_ONLY = int(InstrumentStatus.CANCEL_ONLY)
MAX_SEQ = (1 << 63) - 1  # sequences are stored as signed 64-bit ints
