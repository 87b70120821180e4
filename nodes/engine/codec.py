"""Binary and JSON codecs for commands and events (msgspec msgpack, versioned).

Why msgspec msgpack: encoding and decoding run in C straight to and from the typed
Structs (no dict in between), array-like Structs drop field names from the wire, and the
schema checks types while decoding. Each record is a msgpack array whose first element
is its tag, ``CODEC_VERSION << 8 | KIND``, so every stored record names its codec
version at no extra cost. A later version adds its Structs (new tags) next to the old
ones and still decodes old logs. Decoding garbage or an unknown version raises
``CodecError``, never a bare msgspec error.
"""

from __future__ import annotations

from typing import Any, Union

import msgspec

from nodes.engine.commands import (
    CODEC_VERSION,
    COMMAND_TYPES,
    AddInstrument,
    CancelOrder,
    Command,
    PlaceOrder,
    ReplaceOrder,
    SetInstrumentStatus,
)
from nodes.engine.events import EVENT_TYPES, Event
from nodes.engine.types import InstrumentStatus, OrderType, Reason, Side, TimeInForce


class CodecError(ValueError):
    """Bytes that are not a record of a codec version this engine reads."""


class CommandError(ValueError):
    """A JSON command that is not valid; ``errors`` maps field names to messages."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{field}: {msg}" for field, msg in errors.items()))


_encoder = msgspec.msgpack.Encoder()
_encode = _encoder.encode
_event_decoder = msgspec.msgpack.Decoder(Union[EVENT_TYPES])  # noqa: UP007
_decode_event = _event_decoder.decode
_command_decoder = msgspec.msgpack.Decoder(Union[COMMAND_TYPES])  # noqa: UP007
_raw_decode = msgspec.msgpack.Decoder().decode


def _diagnose(data: Any, what: str, exc: Exception) -> CodecError:
    """A clear error for bytes that failed to decode (slow path, errors only)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        return CodecError(f"{what} must be bytes, not {type(data).__name__}")
    try:
        raw = _raw_decode(data)
    except msgspec.DecodeError:
        return CodecError(f"not a {what} record: {len(data)} bytes of invalid msgpack")
    if isinstance(raw, list) and raw and isinstance(raw[0], int):
        version, kind = raw[0] >> 8, raw[0] & 0xFF
        if version != CODEC_VERSION:
            return CodecError(
                f"unsupported {what} codec version {version} (this engine reads {CODEC_VERSION})"
            )
        return CodecError(f"invalid {what} record of kind {kind}: {exc}")
    return CodecError(f"not a {what} record: {exc}")


def encode_event(event: Event) -> bytes:
    return _encode(event)


def decode_event(data: bytes) -> Event:
    try:
        return _decode_event(data)
    except (msgspec.DecodeError, TypeError) as exc:
        raise _diagnose(data, "event", exc) from None


def encode_events(events: list[Event]) -> list[bytes]:
    return list(map(_encode, events))


def decode_events(datas: list[bytes]) -> list[Event]:
    try:
        return list(map(_decode_event, datas))
    except (msgspec.DecodeError, TypeError):
        return [decode_event(d) for d in datas]  # raises for the first bad record


def encode_command(command: Command) -> bytes:
    return _encode(command)


def decode_command(data: bytes) -> Command:
    try:
        return _command_decoder.decode(data)
    except (msgspec.DecodeError, TypeError) as exc:
        raise _diagnose(data, "command", exc) from None


# ------------------------------------------------------------------------- JSON

_COMMAND_NAMES: dict[str, type[Command]] = {
    "add_instrument": AddInstrument,
    "set_instrument_status": SetInstrumentStatus,
    "place_order": PlaceOrder,
    "cancel_order": CancelOrder,
    "replace_order": ReplaceOrder,
}
_ENUM_FIELDS: dict[str, type] = {
    "side": Side,
    "order_type": OrderType,
    "tif": TimeInForce,
    "status": InstrumentStatus,
}
_INT_FIELDS = {"client_seq", "timestamp", "tick_size", "lot_size", "qty", "price", "order_id"}
_OPTIONAL_INT_FIELDS = {"band_low", "band_high"}
_STR_FIELDS = {"client_id", "symbol", "account"}
_POSITIVE_FIELDS = {"client_seq", "tick_size", "lot_size", "qty", "order_id"}
_NON_NEGATIVE_FIELDS = {"timestamp", "price", "band_low", "band_high"}
_MAX_INT = (1 << 63) - 1


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _enum_value(enum: type, value: Any) -> int:
    if isinstance(value, str):
        try:
            return int(enum[value.upper()])
        except KeyError:
            pass
    elif _is_int(value) and value in enum._value2member_map_:
        return value
    names = ", ".join(m.name.lower() for m in enum)
    raise ValueError(f"must be one of {names}")


def command_from_dict(data: dict[str, Any]) -> Command:
    """Builds a command from JSON-like input, e.g. ``{"type": "place_order",
    "client_id": "c1", "client_seq": 1, "account": "a", "symbol": "X", "side": "buy",
    "qty": 10, "price": 100}``. Enumerations accept their names (any case) or numbers.
    Raises ``CommandError`` listing every bad field."""
    if not isinstance(data, dict):
        raise CommandError({"type": "command must be a JSON object"})
    name = data.get("type")
    cls = _COMMAND_NAMES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise CommandError(
            {"type": f"unknown command type {name!r}; one of {', '.join(_COMMAND_NAMES)}"}
        )
    fields = msgspec.structs.fields(cls)
    known = {f.name for f in fields}
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    for key in data:
        if key != "type" and key not in known:
            errors[key] = "unknown field"
    for f in fields:
        if f.name not in data:
            if f.required:
                errors[f.name] = "missing"
            continue
        value = data[f.name]
        try:
            values[f.name] = _check_field(f.name, value)
        except ValueError as exc:
            errors[f.name] = str(exc)
    if cls is PlaceOrder and "price" not in errors and "order_type" not in errors:
        market = values.get("order_type") == OrderType.MARKET
        if market and values.get("price", 0) != 0:
            errors["price"] = "must be left out for a market order"
        elif not market and not values.get("price"):
            errors["price"] = "a limit order needs a positive price"
    if errors:
        raise CommandError(errors)
    return cls(**values)


def _check_field(name: str, value: Any) -> Any:
    if name in _ENUM_FIELDS:
        return _enum_value(_ENUM_FIELDS[name], value)
    if name == "post_only":
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value
    if name in _STR_FIELDS:
        if not isinstance(value, str) or not value:
            raise ValueError("must be a non-empty string")
        if len(value) > 128:
            raise ValueError("must be at most 128 characters")
        if not value.isprintable():
            raise ValueError("must not contain control characters (NUL, newlines, ...)")
        return value
    if name in _INT_FIELDS or name in _OPTIONAL_INT_FIELDS:
        if value is None and name in _OPTIONAL_INT_FIELDS:
            return None
        if not _is_int(value):
            raise ValueError(f"must be an integer, not {type(value).__name__}")
        if name in _POSITIVE_FIELDS and value < 1:
            raise ValueError("must be a positive integer")
        if name in _NON_NEGATIVE_FIELDS and value < 0:
            raise ValueError("must not be negative")
        if value > _MAX_INT:
            raise ValueError("is too large")
        return value
    raise ValueError("unknown field")  # pragma: no cover - every field is listed above


_EVENT_NAMES = {
    "InstrumentAdded": "instrument_added",
    "InstrumentStatusChanged": "instrument_status_changed",
    "OrderAccepted": "order_accepted",
    "OrderRejected": "order_rejected",
    "Trade": "trade",
    "OrderCancelled": "order_cancelled",
    "OrderReplaced": "order_replaced",
    "CommandDuplicate": "command_duplicate",
}
_EVENT_ENUMS: dict[str, type] = {
    "side": Side,
    "taker_side": Side,
    "order_type": OrderType,
    "tif": TimeInForce,
    "status": InstrumentStatus,
    "reason": Reason,
}


def event_to_dict(event: Event) -> dict[str, Any]:
    """A JSON-friendly dict of an event: ``type`` plus its fields, enumerations as
    names (``"side": "buy"``, ``"reason": "BAD_TICK"``, ``"tif": "GTC"``)."""
    out: dict[str, Any] = {"type": _EVENT_NAMES[type(event).__name__], "kind": event.KIND}
    for name in event.__struct_fields__:
        value = getattr(event, name)
        enum = _EVENT_ENUMS.get(name)
        if enum is not None:
            member = enum._value2member_map_.get(value)
            if member is not None:
                value = member.name if enum in (Reason, TimeInForce) else member.name.lower()
        out[name] = value
    return out


def command_to_dict(command: Command) -> dict[str, Any]:
    """The JSON form ``command_from_dict`` reads."""
    names = {v: k for k, v in _COMMAND_NAMES.items()}
    out: dict[str, Any] = {"type": names[type(command)]}
    for name in command.__struct_fields__:
        value = getattr(command, name)
        enum = _ENUM_FIELDS.get(name)
        if enum is not None and value in enum._value2member_map_:
            value = enum(value).name if enum is TimeInForce else enum(value).name.lower()
        out[name] = value
    return out


__all__ = [
    "CodecError",
    "CommandError",
    "command_from_dict",
    "command_to_dict",
    "decode_command",
    "decode_event",
    "decode_events",
    "encode_command",
    "encode_event",
    "encode_events",
    "event_to_dict",
]
