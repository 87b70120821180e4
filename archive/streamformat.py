"""The layout of a stream entry: one entry per published batch, its id the batch's last position.

Fields:
    term   the publisher's term (the fence it passed), decimal
    first  the batch's first position, decimal; the id `<last>-0` gives the last
    events msgpack array of [position, term, kind, timestamp, payload] arrays

The events carry their own position and term: msgspec then encodes the LogEntry tuples and
decodes them back into LogEntry without a Python loop, and a replay batch may span terms.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from archive.entries import LogEntry

TERM = b"term"
FIRST = b"first"
EVENTS = b"events"

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[LogEntry])


def entry_id(position: int) -> str:
    return f"{position}-0"


def position_of(entry_id: bytes | str) -> int:
    """The log position an entry id stands for (the last position of its batch)."""
    if isinstance(entry_id, bytes):
        entry_id = entry_id.decode()
    return int(entry_id.partition("-")[0])


def encode_events(entries: Sequence[LogEntry]) -> bytes:
    return _encoder.encode(entries)


def decode_events(blob: bytes) -> list[LogEntry]:
    return _decoder.decode(blob)
