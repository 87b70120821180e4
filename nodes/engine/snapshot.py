"""Snapshots and the state digest: the whole state as canonical, versioned bytes.

The canonical state is a msgpack list: position, order id counter, instruments with
their books in priority order, client sequences with their dedup windows, the open
command and the incoming order. ``digest`` is SHA-256 of it. A snapshot is
``SNAPSHOT_MAGIC``, a version byte, then msgpack of ``[running_hash, digest, state]``.

Versions: 2 carries the running hash of ``statehash`` (``HASH_VERSION`` 2). Version 1
carried CPython's ``hash()`` chain, which cannot be carried on: ``restore`` refuses it
with ``SnapshotVersionError`` (a ``CodecError``), and a node's recovery then replays its
log from the start instead, or, when retention has cut the log, installs a new snapshot
(see ``nodes.state.NodeState.recover``).
"""

from __future__ import annotations

import hashlib
from array import array

import msgspec

from nodes.engine import statehash
from nodes.engine.base import EngineState
from nodes.engine.book import Book, BookSide, Order
from nodes.engine.clients import EMPTY_RING, window
from nodes.engine.codec import CodecError
from nodes.engine.types import BUY, DEDUP_WINDOW, SELL

SNAPSHOT_MAGIC = b"TESNAP"
SNAPSHOT_VERSION = 2
_HEADER = len(SNAPSHOT_MAGIC) + 1
_encode = msgspec.msgpack.encode
_parts_decoder = msgspec.msgpack.Decoder(tuple[int, str, msgspec.Raw])


class SnapshotVersionError(CodecError):
    """A snapshot of a version this engine does not read."""


def state(engine: EngineState) -> list:
    """The canonical state (see the module's docstring)."""
    books = []
    for symbol in sorted(engine._books):
        b = engine._books[symbol]
        sides = []
        for side in (b.sides[BUY], b.sides[SELL]):
            sides.append(
                [
                    [
                        level.price,
                        [
                            [o.order_id, o.account, o.remaining, o.filled, o.tif,
                             o.order_type, o.post_only]
                            for o in level.orders
                            if o.remaining
                        ],
                    ]
                    for level in side.best_first()
                ]
            )  # fmt: skip
        books.append([symbol, b.tick_size, b.lot_size, b.band_low, b.band_high, b.status, *sides])
    clients = [[cid, rec[0], window(rec)] for cid, rec in sorted(engine._clients.items())]
    open_command = None if engine._open_cid is None else [engine._open_cid, engine._open_seq]
    incoming = None
    if engine._incoming is not None:
        o = engine._incoming
        incoming = [
            o.order_id, o.account, o.side, o.price, o.remaining, o.filled, o.tif,
            o.order_type, o.post_only, o.symbol,
        ]  # fmt: skip
    return [engine.position, engine._last_order_id, books, clients, open_command, incoming]


def digest(engine: EngineState) -> str:
    return hashlib.sha256(_encode(state(engine))).hexdigest()


def snapshot(engine: EngineState) -> bytes:
    body = _encode(state(engine))
    digest = hashlib.sha256(body).hexdigest()
    return (
        SNAPSHOT_MAGIC
        + bytes([SNAPSHOT_VERSION])
        + _encode([engine.running_hash, digest, msgspec.Raw(body)])
    )


def version(data: bytes) -> int:
    """A snapshot's format version (``CodecError`` for bytes that are not a snapshot)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CodecError("snapshot must be bytes")
    data = bytes(data[:_HEADER])
    if len(data) < _HEADER or not data.startswith(SNAPSHOT_MAGIC):
        raise CodecError("not an engine snapshot (bad magic)")
    return data[-1]


def parts(data: bytes) -> tuple[int, str, msgspec.Raw]:
    """(running hash, digest, state body) of a snapshot of any version, not restored."""
    version(data)
    try:
        return _parts_decoder.decode(data[_HEADER:])
    except (msgspec.DecodeError, TypeError) as exc:
        raise CodecError(f"snapshot is corrupt: {exc}") from exc


def restore(cls: type[EngineState], data: bytes) -> EngineState:
    found = version(data)
    if found != SNAPSHOT_VERSION:
        raise SnapshotVersionError(
            f"unsupported snapshot version {found} (this engine reads {SNAPSHOT_VERSION}"
            + (
                "; version 1 carried a running hash made with Python's hash(), which"
                " this engine no longer computes: replay the log or take a new snapshot)"
                if found == 1
                else ")"
            )
        )
    running_hash, carried, body = parts(data)
    try:
        if hashlib.sha256(body).hexdigest() != carried:
            raise CodecError("snapshot is corrupt: digest mismatch")
        engine = cls()
        _load(engine, msgspec.msgpack.decode(body))
        engine._crc, engine._adler = statehash.split(running_hash)
    except CodecError:
        raise
    except (msgspec.DecodeError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise CodecError(f"snapshot is corrupt: {exc}") from exc
    if digest(engine) != carried:
        raise CodecError("snapshot is corrupt: restored state differs from its digest")
    return engine


def _load(engine: EngineState, state: list) -> None:
    position, last_order_id, books, clients, open_command, incoming = state
    engine.position = position
    engine._last_order_id = last_order_id
    for symbol, tick, lot, low, high, status, bids, asks in books:
        book = engine._books[symbol] = Book(symbol, tick, lot, low, high, status)
        for side, levels in ((BUY, bids), (SELL, asks)):
            book_side: BookSide = book.sides[side]
            for price, orders in reversed(levels):  # worst first keeps keys sorted
                for order_id, account, remaining, filled, tif, otype, post_only in orders:
                    order = Order(
                        order_id, account, side, price, remaining, filled, tif, otype,
                        post_only, symbol,
                    )  # fmt: skip
                    book_side.add(order)
                    engine._orders[order_id] = order
    for cid, last_seq, entries in clients:
        ring = array("q", EMPTY_RING)
        for i, entry in enumerate(entries):
            ring[3 * i : 3 * i + 3] = array("q", entry)
        engine._clients[cid] = [last_seq, ring, len(entries)]
    if open_command is not None:
        engine._open_cid, engine._open_seq = open_command
        client = engine._clients[engine._open_cid]
        engine._open_ring = client[1]
        engine._open_slot = (client[2] - 1) % DEDUP_WINDOW * 3 + 2
    if incoming is not None:
        engine._incoming = Order(*incoming)
