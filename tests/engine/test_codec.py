"""Codec: binary round trips, versioning, clear errors; JSON commands and events."""

from __future__ import annotations

import msgspec
import pytest

from nodes.engine import (
    CODEC_VERSION,
    COMMAND_KINDS,
    EVENT_KINDS,
    AddInstrument,
    CancelOrder,
    CodecError,
    CommandDuplicate,
    CommandError,
    InstrumentAdded,
    InstrumentStatusChanged,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    OrderReplaced,
    PlaceOrder,
    Reason,
    ReplaceOrder,
    SetInstrumentStatus,
    Trade,
    command_from_dict,
    command_to_dict,
    decode_command,
    decode_event,
    decode_events,
    encode_command,
    encode_event,
    encode_events,
    event_kind,
    event_to_dict,
)

TS = 1_700_000_000_123_456_789
EVENTS = [
    InstrumentAdded("ops", 1, TS, "ACME", 5, 10, None, 1000),
    InstrumentStatusChanged("ops", 2, TS, "ACME", 2),
    OrderAccepted("c", 1, TS, 7, "ACME", "acct", 1, 1, 100, 30, 1, False),
    OrderRejected("c", 2, TS, 8, 0),
    Trade("c", 3, TS, "ACME", 100, 10, 2, 7, 9, 20, 0),
    OrderCancelled("c", 4, TS, 7, "ACME", 20, 20),
    OrderReplaced("c", 5, TS, 7, "ACME", 105, 10, False),
    CommandDuplicate("c", 1, TS, 12, 3),
]
COMMANDS = [
    AddInstrument("ops", 1, "ACME", 5, 10, band_low=1, timestamp=TS),
    SetInstrumentStatus("ops", 2, "ACME", 3),
    PlaceOrder("c", 1, "acct", "ACME", 1, 30, 100, 1, 3, False, timestamp=TS),
    CancelOrder("c", 2, "acct", 7),
    ReplaceOrder("c", 3, "acct", 7, 105, 10),
]


def test_every_event_kind_is_covered_and_round_trips():
    assert {event_kind(e) for e in EVENTS} == set(EVENT_KINDS)
    for event in EVENTS:
        assert EVENT_KINDS[event_kind(event)] is type(event)
        data = encode_event(event)
        assert decode_event(data) == event
    assert decode_events(encode_events(EVENTS)) == EVENTS


def test_every_command_round_trips():
    assert {c.KIND for c in COMMANDS} == set(COMMAND_KINDS)
    for command in COMMANDS:
        assert decode_command(encode_command(command)) == command


def test_records_carry_the_codec_version():
    raw = msgspec.msgpack.decode(encode_event(EVENTS[2]))
    assert raw[0] == CODEC_VERSION << 8 | OrderAccepted.KIND
    raw = msgspec.msgpack.decode(encode_command(COMMANDS[2]))
    assert raw[0] == CODEC_VERSION << 8 | PlaceOrder.KIND


def test_unknown_version_is_a_clear_error():
    raw = msgspec.msgpack.decode(encode_event(EVENTS[2]))
    raw[0] = 2 << 8 | OrderAccepted.KIND
    with pytest.raises(CodecError, match="unsupported event codec version 2"):
        decode_event(msgspec.msgpack.encode(raw))
    with pytest.raises(CodecError, match="unsupported command codec version 7"):
        decode_command(msgspec.msgpack.encode([7 << 8 | 1, "x", 1, "S"]))


@pytest.mark.parametrize(
    "data",
    [b"", b"\xc1", b"garbage!", msgspec.msgpack.encode({"a": 1}), msgspec.msgpack.encode([])],
)
def test_garbage_is_a_codec_error(data):
    with pytest.raises(CodecError):
        decode_event(data)
    with pytest.raises(CodecError):
        decode_command(data)
    with pytest.raises(CodecError):
        decode_events([encode_event(EVENTS[0]), data])


def test_wrong_field_types_are_a_codec_error():
    raw = msgspec.msgpack.decode(encode_event(EVENTS[2]))
    raw[3] = "not an int"
    with pytest.raises(CodecError, match="kind 3"):
        decode_event(msgspec.msgpack.encode(raw))
    with pytest.raises(CodecError, match="must be bytes"):
        decode_event("a string")


def test_codec_errors_are_value_errors():
    assert issubclass(CodecError, ValueError)
    assert issubclass(CommandError, ValueError)


def test_event_to_dict_names_enumerations():
    d = event_to_dict(EVENTS[2])
    assert d["type"] == "order_accepted"
    assert d["kind"] == OrderAccepted.KIND
    assert (d["side"], d["order_type"], d["tif"]) == ("buy", "limit", "GTC")
    assert d["order_id"] == 7
    assert event_to_dict(EVENTS[3])["reason"] == "BAD_TICK"
    assert event_to_dict(EVENTS[5])["reason"] == Reason.REQUESTED.name
    assert event_to_dict(EVENTS[4])["taker_side"] == "sell"
    assert msgspec.json.decode(msgspec.json.encode(d)) == d


def test_command_from_dict_builds_commands():
    cmd = command_from_dict(
        {
            "type": "place_order",
            "client_id": "c1",
            "client_seq": 3,
            "account": "acct",
            "symbol": "ACME",
            "side": "sell",
            "qty": 10,
            "price": 105,
            "tif": "ioc",
        }
    )
    assert cmd == PlaceOrder("c1", 3, "acct", "ACME", 2, 10, 105, 1, 2, False)
    market = command_from_dict(
        {"type": "place_order", "client_id": "c1", "client_seq": 4, "account": "a",
         "symbol": "ACME", "side": 1, "qty": 10, "order_type": "market", "tif": "FOK"}
    )  # fmt: skip
    assert (market.order_type, market.price, market.tif) == (2, 0, 3)
    for command in COMMANDS:
        assert command_from_dict(command_to_dict(command)) == command


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"type": "fly"}, "type", "unknown command type"),
        ([1, 2], "type", "JSON object"),
        ({"type": "cancel_order", "client_seq": 1, "account": "a", "order_id": 1},
         "client_id", "missing"),
        ({"type": "cancel_order", "client_id": "c", "client_seq": "1", "account": "a",
          "order_id": 1}, "client_seq", "integer"),
        ({"type": "cancel_order", "client_id": "c", "client_seq": True, "account": "a",
          "order_id": 1}, "client_seq", "integer"),
        ({"type": "cancel_order", "client_id": "c", "client_seq": 0, "account": "a",
          "order_id": 1}, "client_seq", "positive"),
        ({"type": "cancel_order", "client_id": "c", "client_seq": 1, "account": "a",
          "order_id": 1, "extra": 1}, "extra", "unknown field"),
        ({"type": "cancel_order", "client_id": "", "client_seq": 1, "account": "a",
          "order_id": 1}, "client_id", "non-empty"),
        ({"type": "place_order", "client_id": "c", "client_seq": 1, "account": "a",
          "symbol": "S", "side": "buy", "qty": 10, "price": 100.5}, "price", "integer"),
        ({"type": "place_order", "client_id": "c", "client_seq": 1, "account": "a",
          "symbol": "S", "side": "buy", "qty": -10, "price": 100}, "qty", "positive"),
        ({"type": "place_order", "client_id": "c", "client_seq": 1, "account": "a",
          "symbol": "S", "side": "up", "qty": 10, "price": 100}, "side", "buy, sell"),
        ({"type": "place_order", "client_id": "c", "client_seq": 1, "account": "a",
          "symbol": "S", "side": "buy", "qty": 10}, "price", "positive price"),
        ({"type": "place_order", "client_id": "c", "client_seq": 1, "account": "a",
          "symbol": "S", "side": "buy", "qty": 10, "price": 5, "order_type": "market"},
         "price", "market"),
        ({"type": "place_order", "client_id": "c", "client_seq": 1, "account": "a",
          "symbol": "S", "side": "buy", "qty": 10, "price": 5, "post_only": "yes"},
         "post_only", "true or false"),
        ({"type": "set_instrument_status", "client_id": "c", "client_seq": 1, "symbol": "S",
          "status": "closed"}, "status", "open, halted, cancel_only"),
        ({"type": "add_instrument", "client_id": "c", "client_seq": 1, "symbol": "S",
          "band_low": "1"}, "band_low", "integer"),
    ],
)  # fmt: skip
def test_command_from_dict_errors(data, field, message):
    with pytest.raises(CommandError) as info:
        command_from_dict(data)
    assert field in info.value.errors
    assert message in info.value.errors[field]
    assert field in str(info.value)


def test_command_from_dict_reports_every_bad_field():
    with pytest.raises(CommandError) as info:
        command_from_dict({"type": "replace_order", "client_id": 5, "order_id": "x"})
    assert set(info.value.errors) == {"client_id", "client_seq", "account", "order_id",
                                      "price", "qty"}  # fmt: skip
