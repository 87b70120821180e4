"""Commands: the requests a client sends to the engine (the leader turns them into events).

Every command carries ``client_id`` and ``client_seq`` (strictly increasing per client,
gaps allowed) so that a re-delivered command is answered with its original result, and
``timestamp`` (nanoseconds since the epoch) which the leader's runtime stamps before
``Engine.handle``; the engine never reads a clock. Enumerated fields are plain ints,
see ``nodes.engine.types``. Prices and quantities are integers: a price is a multiple
of the instrument's tick size, a quantity a multiple of its lot size.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

from nodes.engine.types import CommandKind, OrderType, TimeInForce

# Commands are encoded as msgpack arrays whose first element is the tag
# ``CODEC_VERSION << 8 | KIND``: the version travels with every record for free.
CODEC_VERSION = 1


def _tag(kind: int) -> int:
    return CODEC_VERSION << 8 | kind


class Command(msgspec.Struct, array_like=True, gc=False):
    client_id: str
    client_seq: int

    KIND: ClassVar[int] = 0


class AddInstrument(Command, tag=_tag(CommandKind.ADD_INSTRUMENT)):
    """Lists a new instrument. ``band_low``/``band_high`` (optional) bound limit prices."""

    symbol: str
    tick_size: int = 1
    lot_size: int = 1
    band_low: int | None = None
    band_high: int | None = None
    timestamp: int = 0

    KIND: ClassVar[int] = int(CommandKind.ADD_INSTRUMENT)


class SetInstrumentStatus(Command, tag=_tag(CommandKind.SET_INSTRUMENT_STATUS)):
    """Changes an instrument's trading status (``InstrumentStatus``)."""

    symbol: str
    status: int
    timestamp: int = 0

    KIND: ClassVar[int] = int(CommandKind.SET_INSTRUMENT_STATUS)


class PlaceOrder(Command, tag=_tag(CommandKind.PLACE_ORDER)):
    """A new order. Market orders leave ``price`` at 0 and must be IOC or FOK;
    ``post_only`` is for GTC limit orders only. ``account`` is the owner (self-trade
    prevention and cancel rights); the engine assigns the order id."""

    account: str
    symbol: str
    side: int
    qty: int
    price: int = 0
    order_type: int = OrderType.LIMIT.value
    tif: int = TimeInForce.GTC.value
    post_only: bool = False
    timestamp: int = 0

    KIND: ClassVar[int] = int(CommandKind.PLACE_ORDER)


class CancelOrder(Command, tag=_tag(CommandKind.CANCEL_ORDER)):
    """Cancels a resting order by its engine order id; only its own account may."""

    account: str
    order_id: int
    timestamp: int = 0

    KIND: ClassVar[int] = int(CommandKind.CANCEL_ORDER)


class ReplaceOrder(Command, tag=_tag(CommandKind.REPLACE_ORDER)):
    """Changes a resting order's price and open quantity (``qty`` is the new open
    quantity, not counting what already traded). The order keeps its time priority only
    when the price is unchanged and the quantity does not go up."""

    account: str
    order_id: int
    price: int
    qty: int
    timestamp: int = 0

    KIND: ClassVar[int] = int(CommandKind.REPLACE_ORDER)


COMMAND_TYPES: tuple[type[Command], ...] = (
    AddInstrument,
    SetInstrumentStatus,
    PlaceOrder,
    CancelOrder,
    ReplaceOrder,
)
COMMAND_KINDS: dict[int, type[Command]] = {c.KIND: c for c in COMMAND_TYPES}
