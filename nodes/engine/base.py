"""The engine's state, and its running hash: what every part of the engine works on.

``Engine`` (engine.py) adds the public API on top; the parts (matching, applying, fused,
clients, snapshot, queries) take an ``EngineState`` and never import ``Engine``.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence

from nodes.engine import statehash
from nodes.engine.book import Book, Order
from nodes.engine.events import Event


class EngineState:
    """Instruments, books, resting orders, client sequences, the open command."""

    def __init__(self) -> None:
        self.position = 0
        self._books: dict[str, Book] = {}
        self._orders: dict[int, Order] = {}  # resting orders by engine order id
        self._last_order_id = 0
        # client_id -> [last_seq, ring, n] (see ``clients``)
        self._clients: dict[str, list] = {}
        # the command whose events are being applied (for counting them)
        self._open_cid: str | None = None
        self._open_seq = 0
        self._open_ring: array | None = None  # the ring and slot of its event count
        self._open_slot = 0
        # the order of the current command that is matching and not (yet) resting
        self._incoming: Order | None = None
        # the running hash (``statehash``): its two checksums and the events not yet folded
        self._crc, self._adler = statehash.INITIAL
        self._pending: list[Event] = []
        # the appliers of the rarer event kinds, by type (``applying``)
        self._appliers: dict[type, Callable] = {}

    def fold_hash(self) -> None:
        """Folds the events applied since the last fold into the running hash."""
        self._crc, self._adler = statehash.fold(self._crc, self._adler, self._pending)
        self._pending.clear()

    def fold_hash_from(self, records: Sequence[bytes]) -> None:
        """``fold_hash`` from the records of the events (``encode_event`` bytes) instead of
        encoding them again: ``records`` are those of every event applied since the
        running hash last covered the state, in order (the leader encodes them for the
        archive anyway). Those already folded (``FOLD_AT``) are the first ones."""
        pending = len(self._pending)
        if pending > len(records):
            raise ValueError(f"{len(records)} records for {pending} events not folded yet")
        if pending:
            tail = records[len(records) - pending :] if pending < len(records) else records
            self._crc, self._adler = statehash.fold_records(self._crc, self._adler, tail)
            self._pending.clear()

    @property
    def running_hash(self) -> int:
        """The running hash at ``position`` (an unsigned 64-bit int; ``statehash`` defines
        it, version ``statehash.HASH_VERSION``): equal on every node, process, machine
        and Python version that applied the same events."""
        if self._pending:
            self.fold_hash()
        return statehash.combine(self._crc, self._adler)
