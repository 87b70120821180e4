"""The layout of a stream entry: one entry per published batch, its id the batch's last position.

Fields:
    term   the publisher's term (the fence it passed), decimal
    first  the batch's first position, decimal; the id `<last>-0` gives the last
    events msgpack array of [position, term, kind, timestamp, payload] arrays
    k, s   signed entries (the live and replay streams of a cluster whose nodes have a
           replication key): the key id and the HMAC-SHA256 of the entry (entry_mac)

The events carry their own position and term: msgspec then encodes the LogEntry tuples and
decodes them back into LogEntry without a Python loop, and a replay batch may span terms.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence

import msgspec

from archive.entries import LogEntry

TERM = b"term"
FIRST = b"first"
EVENTS = b"events"
KEY_ID = b"k"
MAC = b"s"

ENTRY_MAC_VERSION = b"tec-entry-v1"
_SEP = b"\x1f"

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


def entry_mac(secret: bytes, stream_key: str, stream_id: str | bytes, term: bytes, first: bytes, events: bytes) -> bytes:
    """The HMAC-SHA256 of one published entry: one per batch, over the bytes already encoded.

    It covers the stream key and the full entry id besides the fields, so an entry copied
    to another stream (another term's, a replay stream) or re-added under another id does
    not verify."""
    stream_id = stream_id.encode() if isinstance(stream_id, str) else stream_id
    head = _SEP.join((ENTRY_MAC_VERSION, stream_key.encode(), stream_id, term, first)) + _SEP
    signer = hmac.new(secret, head, hashlib.sha256)
    signer.update(events)
    return signer.digest()


def signature(key: tuple[str, bytes] | None, stream_key: str, term: int, first: int, last: int, events: bytes) -> dict:
    """The fields that sign an entry ({KEY_ID: key id, MAC: its entry_mac}) with `key`, a
    (key id, secret) pair; none without a key."""
    if key is None:
        return {}
    key_id, secret = key
    return {KEY_ID: key_id, MAC: entry_mac(secret, stream_key, entry_id(last), str(term).encode(), str(first).encode(), events)}


def entry_refusal(keys: Mapping[str, bytes], stream_key: str, stream_id: bytes, fields: Mapping) -> tuple[str, str] | None:
    """(code, reason) when an entry's signature does not hold with `keys`; None when it does.

    Codes: unsigned, unknown_key, bad_signature, replayed (a leader's genuine MAC for the
    same position under its own id, re-added under another id)."""
    key_id, given = fields.get(KEY_ID), fields.get(MAC)
    if key_id is None or given is None:
        return "unsigned", "unsigned entry: the cluster's entries are signed"
    name = key_id.decode(errors="replace")
    secret = keys.get(name)
    if secret is None:
        return "unknown_key", f"unknown or retired replication key {name[:40]!r}"
    term, first, events = fields.get(TERM, b""), fields.get(FIRST, b""), fields.get(EVENTS, b"")
    if hmac.compare_digest(entry_mac(secret, stream_key, stream_id, term, first, events), given):
        return None
    canonical = entry_id(position_of(stream_id)).encode()
    if canonical != stream_id and hmac.compare_digest(entry_mac(secret, stream_key, canonical, term, first, events), given):
        return "replayed", f"replayed entry: signed as {canonical.decode()}, found as {stream_id.decode(errors='replace')}"
    return "bad_signature", f"bad signature with replication key {name!r}"
