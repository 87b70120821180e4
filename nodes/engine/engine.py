"""The application: a deterministic matching engine (handle commands, apply events).

Contract (what the node runtime relies on):

- ``handle(command)`` is pure: it returns the events the command produces against the
  current state and changes nothing. The leader applies those events (``apply``) before
  it handles the next command; ``process`` does both.
- ``apply(event)`` is the only way state changes; followers call only this. Every
  applied event advances ``position`` (its 1-based log position) by one.
- Nothing here reads a clock or a random source: time arrives in the command and is
  copied into its events, order ids come from a counter in the replicated state.
- Expected outcomes are events (``OrderRejected`` with a ``Reason``); exceptions mean a
  bug or an event log that does not fit the state (``EngineError``); after an
  ``EngineError`` from ``apply`` the engine must be rebuilt (snapshot + replay).
- Idempotency: per client the last sequence and a window of its last ``DEDUP_WINDOW``
  processed commands (seq -> first position, event count) are replicated state. A seq
  in the window is answered with ``CommandDuplicate``; a lower seq outside it with
  ``OrderRejected(STALE_SEQUENCE)``. Apply finds each command's result as the run of
  consecutive events with the same (client_id, client_seq).

Matching is price-time priority; trades happen at the resting order's price. An incoming
order never trades with a resting order of its own account: the resting order is
cancelled (``SELF_TRADE``) and matching continues. Followers never re-run matching: an
incoming GTC order rests as soon as the opposite side no longer crosses it, which is
exactly where the leader's matching stopped.

Where each part lives (one module, one job): ``matching`` (handle), ``applying`` (apply,
the follower's loop), ``fused`` (the leader's handle+apply fast paths), ``clients``
(the dedup windows), ``statehash`` (the running hash, a versioned contract),
``snapshot`` (canonical state, digest, snapshots), ``queries`` (read-only views). This
module holds the state and the public API that composes them.
"""

from __future__ import annotations

import hashlib

from nodes.engine import applying, matching, queries, statehash
from nodes.engine import snapshot as snapshots
from nodes.engine.applying import EngineError
from nodes.engine.base import EngineState
from nodes.engine.clients import find
from nodes.engine.codec import decode_events
from nodes.engine.commands import (
    AddInstrument,
    CancelOrder,
    Command,
    PlaceOrder,
    ReplaceOrder,
    SetInstrumentStatus,
)
from nodes.engine.events import (
    CommandDuplicate,
    Event,
    InstrumentAdded,
    InstrumentStatusChanged,
    OrderCancelled,
    OrderRejected,
    OrderReplaced,
)
from nodes.engine.fused import process_cancel, process_resting_order
from nodes.engine.snapshot import SNAPSHOT_VERSION, SnapshotVersionError
from nodes.engine.types import MAX_SEQ, Reason

__all__ = ["SNAPSHOT_VERSION", "Engine", "EngineError", "SnapshotVersionError"]

R_INVALID_SEQUENCE = int(Reason.INVALID_SEQUENCE)
R_STALE_SEQUENCE = int(Reason.STALE_SEQUENCE)


class Engine(EngineState):
    """The replicated state machine of one cluster: instruments, books, client sequences."""

    def __init__(self) -> None:
        super().__init__()
        self._handlers = {
            PlaceOrder: matching.handle_place,
            CancelOrder: matching.handle_cancel,
            ReplaceOrder: matching.handle_replace,
            AddInstrument: matching.handle_add_instrument,
            SetInstrumentStatus: matching.handle_set_status,
        }
        self._appliers = {
            OrderCancelled: applying.apply_cancelled,
            OrderReplaced: applying.apply_replaced,
            OrderRejected: applying.apply_rejected,
            CommandDuplicate: applying.apply_duplicate,
            InstrumentAdded: applying.apply_instrument_added,
            InstrumentStatusChanged: applying.apply_status_changed,
        }

    # ------------------------------------------------------------------ commands

    def handle(self, command: Command) -> list[Event]:
        """The events ``command`` produces against the current state; changes nothing.

        The result is never empty and its first event carries the command's
        ``client_id`` and ``client_seq`` (every event does)."""
        cid = command.client_id
        seq = command.client_seq
        ts = command.timestamp
        if not cid or not 1 <= seq <= MAX_SEQ:
            return [OrderRejected(cid, seq, ts, R_INVALID_SEQUENCE, 0)]
        client = self._clients.get(cid)
        if client is not None and seq <= client[0]:
            found = find(client, seq)
            if found is not None:
                return [CommandDuplicate(cid, seq, ts, found[0], found[1])]
            return [OrderRejected(cid, seq, ts, R_STALE_SEQUENCE, 0)]
        handler = self._handlers.get(type(command))
        if handler is None:
            raise TypeError(f"not an engine command: {type(command).__name__}")
        return handler(self, command, cid, seq, ts)

    def process(self, command: Command) -> list[Event]:
        """The leader's step: ``handle`` the command, then ``apply`` its events.

        The two most common commands (a GTC limit order that does not cross, a valid
        cancel) take a fused path (``fused``) that produces the same events and the same
        state as handle-then-apply (a property test checks it); anything else goes the
        long way."""
        kind = type(command)
        if kind is PlaceOrder:
            events = process_resting_order(self, command)
        elif kind is CancelOrder:
            events = process_cancel(self, command)
        else:
            events = None
        if events is None:
            events = self.handle(command)
            self.apply_batch(events)
        elif len(self._pending) >= statehash.FOLD_AT:
            self.fold_hash()
        return events

    # -------------------------------------------------------------------- events

    def apply(self, event: Event) -> None:
        """Applies one event of the log, in order; the only way state changes."""
        self.apply_batch((event,))

    apply_batch = applying.apply_batch

    def apply_records(self, records: list[bytes]) -> None:
        """Applies events given as the archive's records (``encode_event`` bytes), in
        order: the same as ``apply_batch(decode_events(records))``, but the running hash
        is folded from the records themselves instead of encoding the events again."""
        events = decode_events(records)
        if self._pending:
            self.fold_hash()
        applying.apply_events(self, events)
        self._crc, self._adler = statehash.fold_records(self._crc, self._adler, records)

    # ---------------------------------------------------------------- state hash

    def digest(self) -> str:
        """SHA-256 (hex) of the canonical state: position, order id counter, instruments
        with their books in priority order, client sequences and their dedup windows."""
        return snapshots.digest(self)

    # ------------------------------------------------------------------ snapshots

    def snapshot(self) -> bytes:
        """The whole state as versioned bytes (``SNAPSHOT_MAGIC``, a version byte, then
        msgpack of ``[running_hash, digest, state]``)."""
        return snapshots.snapshot(self)

    @staticmethod
    def snapshot_digest(data: bytes) -> str:
        """The digest a snapshot carries, read without restoring it (restore checks it)."""
        return snapshots.parts(data)[1]

    @staticmethod
    def body_digest(data: bytes) -> str:
        """SHA-256 (hex) of a snapshot's state as stored: what its digest must be, checked
        without restoring it."""
        return hashlib.sha256(snapshots.parts(data)[2]).hexdigest()

    @classmethod
    def restore(cls, data: bytes) -> Engine:
        """An engine in exactly the state ``snapshot()`` captured (checked by digest);
        ``SnapshotVersionError`` for a snapshot of another version."""
        return snapshots.restore(cls, data)

    # -------------------------------------------------------------------- queries

    symbols = queries.symbols
    instrument = queries.instrument
    depth = queries.depth
    order_status = queries.order_status
