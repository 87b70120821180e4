"""The application: a pure, deterministic matching engine (commands in, events out).

Imports only the standard library and msgspec; see ``engine.py`` for the contract.
"""

from __future__ import annotations

from nodes.engine.codec import (
    CodecError,
    CommandError,
    command_from_dict,
    command_to_dict,
    decode_command,
    decode_event,
    decode_events,
    encode_command,
    encode_event,
    encode_events,
    event_to_dict,
)
from nodes.engine.commands import (
    CODEC_VERSION,
    COMMAND_KINDS,
    AddInstrument,
    CancelOrder,
    Command,
    PlaceOrder,
    ReplaceOrder,
    SetInstrumentStatus,
)
from nodes.engine.engine import SNAPSHOT_VERSION, Engine, EngineError, SnapshotVersionError
from nodes.engine.events import (
    EVENT_KINDS,
    CommandDuplicate,
    Event,
    InstrumentAdded,
    InstrumentStatusChanged,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    OrderReplaced,
    Trade,
    event_kind,
)
from nodes.engine.statehash import HASH_VERSION
from nodes.engine.types import (
    DEDUP_WINDOW,
    CommandKind,
    EventKind,
    InstrumentStatus,
    OrderType,
    Reason,
    Side,
    TimeInForce,
)

__all__ = [
    "CODEC_VERSION",
    "COMMAND_KINDS",
    "DEDUP_WINDOW",
    "EVENT_KINDS",
    "HASH_VERSION",
    "SNAPSHOT_VERSION",
    "AddInstrument",
    "CancelOrder",
    "CodecError",
    "Command",
    "CommandDuplicate",
    "CommandError",
    "CommandKind",
    "Engine",
    "EngineError",
    "Event",
    "EventKind",
    "InstrumentAdded",
    "InstrumentStatus",
    "InstrumentStatusChanged",
    "OrderAccepted",
    "OrderCancelled",
    "OrderRejected",
    "OrderReplaced",
    "OrderType",
    "PlaceOrder",
    "Reason",
    "ReplaceOrder",
    "SetInstrumentStatus",
    "Side",
    "SnapshotVersionError",
    "TimeInForce",
    "Trade",
    "command_from_dict",
    "command_to_dict",
    "decode_command",
    "decode_event",
    "decode_events",
    "encode_command",
    "encode_event",
    "encode_events",
    "event_kind",
    "event_to_dict",
]
