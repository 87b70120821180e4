"""The running state hash: a versioned contract, the same on every machine and Python.

Nodes report ``(position, running hash)`` in their heartbeats and the control plane
flags nodes whose hashes differ at the same position, so the value must not depend on
the process, the interpreter or the machine: no ``hash()`` (salted for str, and free to
change between Python versions), no dict order, no float repr.

Version 2 (``HASH_VERSION``), the definition:

    stream(p)  = encode_event(e_1) || encode_event(e_2) || ... || encode_event(e_p)
    hash(p)    = CRC-32(stream(p)) << 32 | Adler-32(stream(p))

``encode_event`` is the canonical record the archive stores (msgpack array, first element
the tag ``CODEC_VERSION << 8 | KIND``, then every field in declaration order, strings as
UTF-8, ints in their shortest msgpack form), so every field of every event is covered,
strings included. CRC-32 is ISO-HDLC (``zlib.crc32``), Adler-32 is RFC 1950
(``zlib.adler32``); both run over a stream and carry their whole state in 32 bits, so
the hash can be folded in batches of any size (the value does not depend on how events
were grouped) and a snapshot can store it and go on from it. It detects divergence
cheaply and early; it is not a cryptographic commitment (``Engine.digest`` is: SHA-256
of the whole canonical state).

Version 1 was CPython's ``hash()`` of int tuples (string fields left out); a snapshot
that carries one is refused by ``Engine.restore`` (see ``nodes.engine.snapshot``).
"""

from __future__ import annotations

from zlib import adler32, crc32

import msgspec

HASH_VERSION = 2

# The (crc, adler) pair of the empty stream, position 0.
INITIAL = (0, 1)

# Events wait in a list and are folded in bulk (one msgpack encode of the list, one pass
# of each checksum): much cheaper per event than hashing each one as it is applied.
FOLD_AT = 4096

_encode = msgspec.msgpack.Encoder().encode  # the codec's encoder: the archive's bytes


def fold(crc: int, adler: int, events: list) -> tuple[int, int]:
    """The checksums after ``events`` (in log order) are appended to the stream."""
    n = len(events)
    if not n:
        return crc, adler
    # msgpack of a list is an array header followed by each element's own encoding
    data = memoryview(_encode(events))[_array_header_size(n) :]
    return crc32(data, crc), adler32(data, adler)


def fold_records(crc: int, adler: int, records: list[bytes]) -> tuple[int, int]:
    """The same as ``fold`` for events given as their canonical records (the archive's
    payloads, as ``encode_event`` wrote them): no encoding at all."""
    data = b"".join(records)
    return crc32(data, crc), adler32(data, adler)


def combine(crc: int, adler: int) -> int:
    """The running hash as one unsigned 64-bit int."""
    return crc << 32 | adler


def split(value: int) -> tuple[int, int]:
    """The (crc, adler) pair of a running hash value (to go on from a snapshot)."""
    if not 0 <= value < 1 << 64:
        raise ValueError(f"running hash {value} is not an unsigned 64-bit int")
    return value >> 32, value & 0xFFFF_FFFF


def _array_header_size(n: int) -> int:
    if n < 16:
        return 1  # fixarray
    if n < 1 << 16:
        return 3  # array 16
    return 5  # array 32
