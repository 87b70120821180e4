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
"""

from __future__ import annotations

import hashlib
from array import array
from collections import deque
from collections.abc import Callable, Iterable

import msgspec

from nodes.engine.book import Book, BookSide, Order
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
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    OrderReplaced,
    Trade,
)
from nodes.engine.types import (
    DEDUP_WINDOW,
    InstrumentStatus,
    OrderType,
    Reason,
    Side,
    TimeInForce,
)


class EngineError(RuntimeError):
    """An event does not fit the state it is applied to (corrupt or foreign log)."""


# Plain ints on the hot path: comparing an IntEnum member costs more than an int.
BUY = int(Side.BUY)
SELL = int(Side.SELL)
LIMIT = int(OrderType.LIMIT)
MARKET = int(OrderType.MARKET)
GTC = int(TimeInForce.GTC)
IOC = int(TimeInForce.IOC)
FOK = int(TimeInForce.FOK)
OPEN = int(InstrumentStatus.OPEN)
HALTED = int(InstrumentStatus.HALTED)
CANCEL_ONLY = int(InstrumentStatus.CANCEL_ONLY)
R_INVALID_COMMAND = int(Reason.INVALID_COMMAND)
R_INVALID_SEQUENCE = int(Reason.INVALID_SEQUENCE)
R_STALE_SEQUENCE = int(Reason.STALE_SEQUENCE)
R_UNKNOWN_INSTRUMENT = int(Reason.UNKNOWN_INSTRUMENT)
R_INSTRUMENT_EXISTS = int(Reason.INSTRUMENT_EXISTS)
R_INSTRUMENT_HALTED = int(Reason.INSTRUMENT_HALTED)
R_INSTRUMENT_CANCEL_ONLY = int(Reason.INSTRUMENT_CANCEL_ONLY)
R_BAD_TICK = int(Reason.BAD_TICK)
R_BAD_LOT = int(Reason.BAD_LOT)
R_OUTSIDE_PRICE_BAND = int(Reason.OUTSIDE_PRICE_BAND)
R_UNKNOWN_ORDER = int(Reason.UNKNOWN_ORDER)
R_NOT_ORDER_OWNER = int(Reason.NOT_ORDER_OWNER)
R_FOK_NOT_FILLABLE = int(Reason.FOK_NOT_FILLABLE)
R_POST_ONLY_WOULD_CROSS = int(Reason.POST_ONLY_WOULD_CROSS)
R_REQUESTED = int(Reason.REQUESTED)
R_UNFILLED = int(Reason.UNFILLED)
R_SELF_TRADE = int(Reason.SELF_TRADE)

# The limit key of a market order: every opposite level crosses it.
NO_LIMIT = -(1 << 80)

K_ACCEPTED = OrderAccepted.KIND
K_REJECTED = OrderRejected.KIND
K_DUPLICATE = CommandDuplicate.KIND

MAX_SEQ = (1 << 63) - 1  # sequences are stored as signed 64-bit ints
_EMPTY_RING = bytes(8 * 3 * DEDUP_WINDOW)
_UNRECORDED = (R_INVALID_SEQUENCE, R_STALE_SEQUENCE)
_STATUS_REJECT = {HALTED: R_INSTRUMENT_HALTED, CANCEL_ONLY: R_INSTRUMENT_CANCEL_ONLY}

SNAPSHOT_MAGIC = b"TESNAP"
SNAPSHOT_VERSION = 1


def _status_name(status: int) -> str:
    return InstrumentStatus(status).name.lower()


class Engine:
    """The replicated state machine of one cluster: instruments, books, client sequences."""

    def __init__(self) -> None:
        self.position = 0
        self._hash = 0
        self._books: dict[str, Book] = {}
        self._orders: dict[int, Order] = {}  # resting orders by engine order id
        self._last_order_id = 0
        # client_id -> [last_seq, ring, n]: the client's last DEDUP_WINDOW processed
        # commands as (seq, first position, event count) triples in a ring of machine
        # ints (no objects to allocate or free per command); n counts all it recorded
        self._clients: dict[str, list] = {}
        # the command whose events are being applied (for counting them)
        self._open_cid: str | None = None
        self._open_seq = 0
        self._open_ring: array | None = None  # the ring and slot of its event count
        self._open_slot = 0
        # the order of the current command that is matching and not (yet) resting
        self._incoming: Order | None = None
        self._handlers: dict[type, Callable[..., list[Event]]] = {
            PlaceOrder: self._handle_place,
            CancelOrder: self._handle_cancel,
            ReplaceOrder: self._handle_replace,
            AddInstrument: self._handle_add_instrument,
            SetInstrumentStatus: self._handle_set_status,
        }
        self._appliers: dict[type, Callable[[Event], None]] = {
            OrderCancelled: self._apply_cancelled,
            OrderReplaced: self._apply_replaced,
            OrderRejected: self._apply_rejected,
            CommandDuplicate: self._apply_duplicate,
            InstrumentAdded: self._apply_instrument_added,
            InstrumentStatusChanged: self._apply_status_changed,
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
            for s, position, count in reversed(_window(client)):  # rare: a scan is fine
                if s == seq:
                    return [CommandDuplicate(cid, seq, ts, position, count)]
                if s < seq:
                    break
            return [OrderRejected(cid, seq, ts, R_STALE_SEQUENCE, 0)]
        handler = self._handlers.get(type(command))
        if handler is None:
            raise TypeError(f"not an engine command: {type(command).__name__}")
        return handler(command, cid, seq, ts)

    def process(self, command: Command) -> list[Event]:
        """The leader's step: ``handle`` the command, then ``apply`` its events.

        The two most common commands (a GTC limit order that does not cross, a valid
        cancel) take a fused path that produces the same events and the same state as
        handle-then-apply (a property test checks it); anything else goes the long way."""
        kind = type(command)
        if kind is PlaceOrder:
            events = self._process_resting_order(command)
        elif kind is CancelOrder:
            events = self._process_cancel(command)
        else:
            events = None
        if events is None:
            events = self.handle(command)
            self.apply_batch(events)
        return events

    def _process_resting_order(self, c: PlaceOrder) -> list[Event] | None:
        """Fused handle+apply of a valid GTC limit order that rests without trading."""
        if c.tif != GTC or c.order_type != LIMIT:
            return None
        cid = c.client_id
        seq = c.client_seq
        client = self._clients.get(cid)
        book = self._books.get(c.symbol)
        price = c.price
        qty = c.qty
        if not (
            cid
            and 1 <= seq <= MAX_SEQ
            and (client is None or seq > client[0])
            and book is not None
            and book.status == OPEN
            and qty > 0
            and not price % book.tick_size
            and not qty % book.lot_size
            and book.min_price <= price <= book.max_price
            and self._incoming is None
        ):
            return None
        side = c.side
        sides = book.sides
        if side == BUY:
            keys = sides[SELL].keys
            if keys and keys[-1] >= -price:
                return None
            key = price
        elif side == SELL:
            keys = sides[BUY].keys
            if keys and keys[-1] >= price:
                return None
            key = -price
        else:
            return None
        ts = c.timestamp
        order_id = self._last_order_id + 1
        event = OrderAccepted(
            cid, seq, ts, order_id, c.symbol, c.account, side, c.order_type, price, qty, c.tif,
            c.post_only,
        )  # fmt: skip
        self.position = position = self.position + 1
        self._last_order_id = order_id
        self._hash = hash((self._hash, 3, seq, ts, order_id, price, qty))
        order = Order(
            order_id, c.account, side, price, qty, 0, c.tif, c.order_type, c.post_only, c.symbol
        )
        own = sides[side]
        level = own.levels.get(key)
        if level is None:
            own.add(order)
        else:
            level.orders.append(order)
            level.qty += qty
            level.count += 1
            order.level = level
        self._orders[order_id] = order
        # what apply() records for the single event of a new command's result
        if client is None:
            client = self._clients[cid] = [0, array("q", _EMPTY_RING), 0]
        client[0] = seq
        ring = client[1]
        slot = client[2] % DEDUP_WINDOW * 3
        ring[slot] = seq
        ring[slot + 1] = position
        ring[slot + 2] = 1
        client[2] += 1
        self._open_cid = cid
        self._open_seq = seq
        self._open_ring = ring
        self._open_slot = slot + 2
        return [event]

    def _process_cancel(self, c: CancelOrder) -> list[Event] | None:
        """Fused handle+apply of a cancel that succeeds."""
        cid = c.client_id
        seq = c.client_seq
        client = self._clients.get(cid)
        order_id = c.order_id
        order = self._orders.get(order_id)
        if not (
            cid
            and 1 <= seq <= MAX_SEQ
            and (client is None or seq > client[0])
            and order is not None
            and order.account == c.account
            and self._books[order.symbol].status != HALTED
            and self._incoming is None
        ):
            return None
        ts = c.timestamp
        qty = order.remaining
        event = OrderCancelled(cid, seq, ts, order_id, order.symbol, R_REQUESTED, qty)
        self.position = position = self.position + 1
        self._hash = hash((self._hash, 6, seq, ts, order_id, R_REQUESTED, qty))
        del self._orders[order_id]
        self._unlink(order)
        # what apply() records for the single event of a new command's result
        if client is None:
            client = self._clients[cid] = [0, array("q", _EMPTY_RING), 0]
        client[0] = seq
        ring = client[1]
        slot = client[2] % DEDUP_WINDOW * 3
        ring[slot] = seq
        ring[slot + 1] = position
        ring[slot + 2] = 1
        client[2] += 1
        self._open_cid = cid
        self._open_seq = seq
        self._open_ring = ring
        self._open_slot = slot + 2
        return [event]

    def _handle_place(self, c: PlaceOrder, cid: str, seq: int, ts: int) -> list[Event]:
        book = self._books.get(c.symbol)
        if book is None:
            return [OrderRejected(cid, seq, ts, R_UNKNOWN_INSTRUMENT, 0)]
        if book.status != OPEN:
            return [OrderRejected(cid, seq, ts, _STATUS_REJECT[book.status], 0)]
        side = c.side
        qty = c.qty
        tif = c.tif
        price = c.price
        post_only = c.post_only
        if (side != BUY and side != SELL) or qty <= 0 or tif < GTC or tif > FOK:
            return [OrderRejected(cid, seq, ts, R_INVALID_COMMAND, 0)]
        if c.order_type == LIMIT:
            if price <= 0 or (post_only and tif != GTC):
                return [OrderRejected(cid, seq, ts, R_INVALID_COMMAND, 0)]
            if price % book.tick_size:
                return [OrderRejected(cid, seq, ts, R_BAD_TICK, 0)]
            if not book.min_price <= price <= book.max_price:
                return [OrderRejected(cid, seq, ts, R_OUTSIDE_PRICE_BAND, 0)]
            limit_key = -price if side == BUY else price
        elif c.order_type == MARKET:
            if price != 0 or tif == GTC or post_only:
                return [OrderRejected(cid, seq, ts, R_INVALID_COMMAND, 0)]
            limit_key = NO_LIMIT
        else:
            return [OrderRejected(cid, seq, ts, R_INVALID_COMMAND, 0)]
        if qty % book.lot_size:
            return [OrderRejected(cid, seq, ts, R_BAD_LOT, 0)]

        symbol = c.symbol
        order_id = self._last_order_id + 1
        accepted = OrderAccepted(
            cid, seq, ts, order_id, symbol, c.account, side, c.order_type, price, qty, tif,
            post_only,
        )  # fmt: skip
        opposite = book.sides[3 - side]
        keys = opposite.keys
        if not keys or keys[-1] < limit_key:  # nothing to trade with
            if tif == GTC:
                return [accepted]
            if tif == FOK:
                return [OrderRejected(cid, seq, ts, R_FOK_NOT_FILLABLE, 0)]
            return [accepted, OrderCancelled(cid, seq, ts, order_id, symbol, R_UNFILLED, qty)]
        if post_only:
            return [OrderRejected(cid, seq, ts, R_POST_ONLY_WOULD_CROSS, 0)]
        if tif == FOK and not _fillable(opposite, limit_key, c.account, qty):
            return [OrderRejected(cid, seq, ts, R_FOK_NOT_FILLABLE, 0)]
        events: list[Event] = [accepted]
        left = _match(
            events, opposite, limit_key, side, order_id, c.account, qty, symbol, cid, seq, ts
        )
        if left and tif != GTC:
            events.append(OrderCancelled(cid, seq, ts, order_id, symbol, R_UNFILLED, left))
        return events

    def _handle_cancel(self, c: CancelOrder, cid: str, seq: int, ts: int) -> list[Event]:
        order = self._orders.get(c.order_id)
        if order is None:
            return [OrderRejected(cid, seq, ts, R_UNKNOWN_ORDER, c.order_id)]
        if order.account != c.account:
            return [OrderRejected(cid, seq, ts, R_NOT_ORDER_OWNER, c.order_id)]
        if self._books[order.symbol].status == HALTED:
            return [OrderRejected(cid, seq, ts, R_INSTRUMENT_HALTED, c.order_id)]
        return [
            OrderCancelled(cid, seq, ts, order.order_id, order.symbol, R_REQUESTED, order.remaining)
        ]

    def _handle_replace(self, c: ReplaceOrder, cid: str, seq: int, ts: int) -> list[Event]:
        order_id = c.order_id
        order = self._orders.get(order_id)
        if order is None:
            return [OrderRejected(cid, seq, ts, R_UNKNOWN_ORDER, order_id)]
        if order.account != c.account:
            return [OrderRejected(cid, seq, ts, R_NOT_ORDER_OWNER, order_id)]
        book = self._books[order.symbol]
        if book.status != OPEN:
            return [OrderRejected(cid, seq, ts, _STATUS_REJECT[book.status], order_id)]
        price = c.price
        qty = c.qty
        if price <= 0 or qty <= 0:
            return [OrderRejected(cid, seq, ts, R_INVALID_COMMAND, order_id)]
        if price % book.tick_size:
            return [OrderRejected(cid, seq, ts, R_BAD_TICK, order_id)]
        if qty % book.lot_size:
            return [OrderRejected(cid, seq, ts, R_BAD_LOT, order_id)]
        if not book.min_price <= price <= book.max_price:
            return [OrderRejected(cid, seq, ts, R_OUTSIDE_PRICE_BAND, order_id)]
        symbol = order.symbol
        if price == order.price and qty <= order.remaining:
            return [OrderReplaced(cid, seq, ts, order_id, symbol, price, qty, True)]
        replaced = OrderReplaced(cid, seq, ts, order_id, symbol, price, qty, False)
        side = order.side
        limit_key = -price if side == BUY else price
        opposite = book.sides[3 - side]
        keys = opposite.keys
        if not keys or keys[-1] < limit_key:
            return [replaced]
        if order.post_only:
            return [OrderRejected(cid, seq, ts, R_POST_ONLY_WOULD_CROSS, order_id)]
        events: list[Event] = [replaced]
        _match(
            events, opposite, limit_key, side, order_id, order.account, qty, symbol, cid, seq, ts
        )
        return events

    def _handle_add_instrument(self, c: AddInstrument, cid: str, seq: int, ts: int) -> list[Event]:
        if c.symbol in self._books:
            return [OrderRejected(cid, seq, ts, R_INSTRUMENT_EXISTS, 0)]
        low, high = c.band_low, c.band_high
        if (
            not c.symbol
            or c.tick_size < 1
            or c.lot_size < 1
            or (low is not None and low < 1)
            or (high is not None and high < 1)
            or (low is not None and high is not None and low > high)
        ):
            return [OrderRejected(cid, seq, ts, R_INVALID_COMMAND, 0)]
        return [InstrumentAdded(cid, seq, ts, c.symbol, c.tick_size, c.lot_size, low, high)]

    def _handle_set_status(
        self, c: SetInstrumentStatus, cid: str, seq: int, ts: int
    ) -> list[Event]:
        if c.symbol not in self._books:
            return [OrderRejected(cid, seq, ts, R_UNKNOWN_INSTRUMENT, 0)]
        if c.status not in (OPEN, HALTED, CANCEL_ONLY):
            return [OrderRejected(cid, seq, ts, R_INVALID_COMMAND, 0)]
        return [InstrumentStatusChanged(cid, seq, ts, c.symbol, c.status)]

    # -------------------------------------------------------------------- events

    def apply(self, event: Event) -> None:
        """Applies one event of the log, in order; the only way state changes."""
        self.apply_batch((event,))

    def apply_batch(self, events: Iterable[Event]) -> None:
        """Applies events in order (the follower's path); same as ``apply`` one by one.

        The common kinds are handled inline, with the state's dicts in locals: this is
        the follower's hot loop."""
        books = self._books
        orders_by_id = self._orders
        clients = self._clients
        appliers = self._appliers
        for event in events:
            self.position = position = self.position + 1
            kind = type(event)
            if kind is OrderAccepted:
                order_id = event.order_id
                if order_id != self._last_order_id + 1:
                    raise EngineError(f"event at {position}: order id {order_id} out of sequence")
                self._last_order_id = order_id
                price = event.price
                side = event.side
                qty = event.qty
                self._hash = hash(
                    (self._hash, 3, event.client_seq, event.timestamp, order_id, price, qty)
                )
                order = Order(
                    order_id, event.account, side, price, qty, 0, event.tif, event.order_type,
                    event.post_only, event.symbol,
                )  # fmt: skip
                if event.tif == GTC:
                    sides = books[event.symbol].sides
                    keys = sides[3 - side].keys
                    if side == BUY:
                        key = price
                        crossed = keys and keys[-1] >= -price
                    else:
                        key = -price
                        crossed = keys and keys[-1] >= price
                    if crossed:
                        self._incoming = order
                    else:
                        own = sides[side]
                        level = own.levels.get(key)
                        if level is None:
                            own.add(order)
                        else:
                            level.orders.append(order)
                            level.qty += qty
                            level.count += 1
                            order.level = level
                        orders_by_id[order_id] = order
                else:
                    self._incoming = order
            elif kind is OrderCancelled:
                self._apply_cancelled(event)
            elif kind is Trade:
                taker = self._incoming
                if taker is None or taker.order_id != event.taker_order_id:
                    raise EngineError(
                        f"event at {position}: trade for a taker that is not incoming"
                    )
                qty = event.qty
                self._hash = hash(
                    (self._hash, 5, event.client_seq, event.timestamp, event.maker_order_id,
                     event.taker_order_id, event.price, qty)
                )  # fmt: skip
                maker = orders_by_id[event.maker_order_id]
                maker.remaining = left = event.maker_remaining
                maker.filled += qty
                level = maker.level
                level.qty -= qty
                if not left:
                    del orders_by_id[maker.order_id]
                    level.count -= 1
                    if level.count:
                        orders = level.orders
                        while not orders[0].remaining:
                            orders.popleft()
                    else:
                        books[event.symbol].sides[maker.side].drop(level)
                taker.remaining = event.taker_remaining
                taker.filled += qty
                if not taker.remaining:
                    self._incoming = None
                elif taker.tif == GTC:
                    self._rest_if_uncrossed(taker)
            else:
                appliers[kind](event)

            # which command's result is this event part of (for duplicate answers)
            seq = event.client_seq
            cid = event.client_id
            if seq == self._open_seq and cid == self._open_cid:
                self._open_ring[self._open_slot] += 1
            elif kind is CommandDuplicate or (
                kind is OrderRejected and event.reason in _UNRECORDED
            ):
                self._open_cid = None  # answered without consuming the client's sequence
            else:
                client = clients.get(cid)
                if client is None:
                    client = clients[cid] = [0, array("q", _EMPTY_RING), 0]
                elif seq <= client[0]:
                    raise EngineError(
                        f"event at {position}: client {cid!r} seq {seq} is not above {client[0]}"
                    )
                client[0] = seq
                ring = client[1]
                slot = client[2] % DEDUP_WINDOW * 3
                ring[slot] = seq
                ring[slot + 1] = position
                ring[slot + 2] = 1
                client[2] += 1
                self._open_cid = cid
                self._open_seq = seq
                self._open_ring = ring
                self._open_slot = slot + 2

    def _apply_duplicate(self, e: CommandDuplicate) -> None:
        self._open_cid = None  # a duplicate is never part of the original's result
        self._open_seq = 0
        self._hash = hash((self._hash, 8, e.client_seq, e.timestamp, e.original_position))

    def _apply_rejected(self, e: OrderRejected) -> None:
        if e.reason in _UNRECORDED:
            self._open_cid = None
            self._open_seq = 0
        self._hash = hash((self._hash, 4, e.client_seq, e.timestamp, e.reason, e.order_id))

    def _rest_if_uncrossed(self, order: Order) -> None:
        book = self._books[order.symbol]
        keys = book.sides[3 - order.side].keys
        if not keys or keys[-1] < (-order.price if order.side == BUY else order.price):
            book.sides[order.side].add(order)
            self._orders[order.order_id] = order
            self._incoming = None

    def _apply_cancelled(self, e: OrderCancelled) -> None:
        order_id = e.order_id
        self._hash = hash((self._hash, 6, e.client_seq, e.timestamp, order_id, e.reason, e.qty))
        incoming = self._incoming
        if incoming is not None and incoming.order_id == order_id:
            self._incoming = None
            return
        order = self._orders.pop(order_id)
        self._unlink(order)
        if incoming is not None and incoming.tif == GTC:
            self._rest_if_uncrossed(incoming)  # a self-trade cancel may end the crossing

    def _unlink(self, order: Order) -> None:
        """Takes a resting order off its level (marked dead, dropped lazily)."""
        level = order.level
        level.qty -= order.remaining
        order.remaining = 0
        level.count -= 1
        if not level.count:
            self._books[order.symbol].sides[order.side].drop(level)
            return
        orders = level.orders
        if orders[0] is order:
            while not orders[0].remaining:
                orders.popleft()
        elif len(orders) > 2 * level.count + 32:
            level.orders = deque(o for o in orders if o.remaining)

    def _apply_replaced(self, e: OrderReplaced) -> None:
        self._hash = hash((self._hash, 7, e.client_seq, e.timestamp, e.order_id, e.price, e.qty))
        order = self._orders[e.order_id]
        if e.priority_kept:
            order.level.qty += e.qty - order.remaining
            order.remaining = e.qty
            return
        del self._orders[e.order_id]
        self._unlink(order)
        new = Order(
            order.order_id, order.account, order.side, e.price, e.qty, order.filled, order.tif,
            order.order_type, order.post_only, order.symbol,
        )  # fmt: skip
        self._incoming = new
        self._rest_if_uncrossed(new)

    def _apply_instrument_added(self, e: InstrumentAdded) -> None:
        self._hash = hash((self._hash, 1, e.client_seq, e.timestamp, e.tick_size, e.lot_size))
        if e.symbol in self._books:
            raise EngineError(f"event at {self.position}: instrument {e.symbol!r} exists")
        self._books[e.symbol] = Book(e.symbol, e.tick_size, e.lot_size, e.band_low, e.band_high)

    def _apply_status_changed(self, e: InstrumentStatusChanged) -> None:
        self._hash = hash((self._hash, 2, e.client_seq, e.timestamp, e.status))
        self._books[e.symbol].status = e.status

    # ------------------------------------------------------------------- hashing

    @property
    def running_hash(self) -> int:
        """A cheap hash chained over every applied event (an unsigned 64-bit int).

        It hashes tuples of ints only (``hash`` of ints and tuples is not salted per
        process, unlike str/bytes), so it is equal on every node running the same
        CPython minor version; string fields are covered by ``digest``."""
        return self._hash & 0xFFFF_FFFF_FFFF_FFFF

    def digest(self) -> str:
        """SHA-256 (hex) of the canonical state: position, order id counter, instruments
        with their books in priority order, client sequences and their dedup windows."""
        return hashlib.sha256(msgspec.msgpack.encode(self._state())).hexdigest()

    def _state(self) -> list:
        books = []
        for symbol in sorted(self._books):
            b = self._books[symbol]
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
            books.append(
                [symbol, b.tick_size, b.lot_size, b.band_low, b.band_high, b.status, *sides]
            )
        clients = [[cid, rec[0], _window(rec)] for cid, rec in sorted(self._clients.items())]
        open_command = None if self._open_cid is None else [self._open_cid, self._open_seq]
        incoming = None
        if self._incoming is not None:
            o = self._incoming
            incoming = [
                o.order_id, o.account, o.side, o.price, o.remaining, o.filled, o.tif,
                o.order_type, o.post_only, o.symbol,
            ]  # fmt: skip
        return [self.position, self._last_order_id, books, clients, open_command, incoming]

    # ------------------------------------------------------------------ snapshots

    def snapshot(self) -> bytes:
        """The whole state as versioned bytes (``SNAPSHOT_MAGIC``, a version byte, then
        msgpack of ``[running_hash, digest, state]``)."""
        state = self._state()
        body = msgspec.msgpack.encode(state)
        digest = hashlib.sha256(body).hexdigest()
        return (
            SNAPSHOT_MAGIC
            + bytes([SNAPSHOT_VERSION])
            + msgspec.msgpack.encode([self._hash, digest, msgspec.Raw(body)])
        )

    @staticmethod
    def snapshot_digest(data: bytes) -> str:
        """The digest a snapshot carries, read without restoring it (restore checks it)."""
        from nodes.engine.codec import CodecError

        try:
            _hash, digest, _body = msgspec.msgpack.decode(
                data[len(SNAPSHOT_MAGIC) + 1 :], type=tuple[int, str, msgspec.Raw]
            )
        except (msgspec.DecodeError, TypeError) as exc:
            raise CodecError(f"snapshot is corrupt: {exc}") from exc
        return digest

    @staticmethod
    def body_digest(data: bytes) -> str:
        """SHA-256 (hex) of a snapshot's state as stored: what its digest must be, checked
        without restoring it."""
        from nodes.engine.codec import CodecError

        try:
            _hash, _digest, body = msgspec.msgpack.decode(
                data[len(SNAPSHOT_MAGIC) + 1 :], type=tuple[int, str, msgspec.Raw]
            )
        except (msgspec.DecodeError, TypeError) as exc:
            raise CodecError(f"snapshot is corrupt: {exc}") from exc
        return hashlib.sha256(body).hexdigest()

    @classmethod
    def restore(cls, data: bytes) -> Engine:
        """An engine in exactly the state ``snapshot()`` captured (checked by digest)."""
        from nodes.engine.codec import CodecError

        if not isinstance(data, bytes | bytearray | memoryview):
            raise CodecError("snapshot must be bytes")
        data = bytes(data)
        if not data.startswith(SNAPSHOT_MAGIC) or len(data) < len(SNAPSHOT_MAGIC) + 1:
            raise CodecError("not an engine snapshot (bad magic)")
        version = data[len(SNAPSHOT_MAGIC)]
        if version != SNAPSHOT_VERSION:
            raise CodecError(
                f"unsupported snapshot version {version} (this engine reads {SNAPSHOT_VERSION})"
            )
        try:
            running_hash, digest, body = msgspec.msgpack.decode(
                data[len(SNAPSHOT_MAGIC) + 1 :], type=tuple[int, str, msgspec.Raw]
            )
            state = msgspec.msgpack.decode(body)
            if hashlib.sha256(body).hexdigest() != digest:
                raise CodecError("snapshot is corrupt: digest mismatch")
            engine = cls()
            engine._load(state)
        except CodecError:
            raise
        except (msgspec.DecodeError, ValueError, TypeError, KeyError, IndexError) as exc:
            raise CodecError(f"snapshot is corrupt: {exc}") from exc
        engine._hash = running_hash
        if engine.digest() != digest:
            raise CodecError("snapshot is corrupt: restored state differs from its digest")
        return engine

    def _load(self, state: list) -> None:
        position, last_order_id, books, clients, open_command, incoming = state
        self.position = position
        self._last_order_id = last_order_id
        for symbol, tick, lot, low, high, status, bids, asks in books:
            book = self._books[symbol] = Book(symbol, tick, lot, low, high, status)
            for side, levels in ((BUY, bids), (SELL, asks)):
                book_side: BookSide = book.sides[side]
                for price, orders in reversed(levels):  # worst first keeps keys sorted
                    for order_id, account, remaining, filled, tif, otype, post_only in orders:
                        order = Order(
                            order_id, account, side, price, remaining, filled, tif, otype,
                            post_only, symbol,
                        )  # fmt: skip
                        book_side.add(order)
                        self._orders[order_id] = order
        for cid, last_seq, window in clients:
            ring = array("q", _EMPTY_RING)
            for i, entry in enumerate(window):
                ring[3 * i : 3 * i + 3] = array("q", entry)
            self._clients[cid] = [last_seq, ring, len(window)]
        if open_command is not None:
            self._open_cid, self._open_seq = open_command
            client = self._clients[self._open_cid]
            self._open_ring = client[1]
            self._open_slot = (client[2] - 1) % DEDUP_WINDOW * 3 + 2
        if incoming is not None:
            self._incoming = Order(*incoming)

    # -------------------------------------------------------------------- queries

    def symbols(self) -> list[str]:
        return sorted(self._books)

    def instrument(self, symbol: str) -> dict | None:
        """An instrument's trading rules and status, JSON-friendly; None if unknown."""
        book = self._books.get(symbol)
        if book is None:
            return None
        return {
            "symbol": book.symbol,
            "tick_size": book.tick_size,
            "lot_size": book.lot_size,
            "band_low": book.band_low,
            "band_high": book.band_high,
            "status": _status_name(book.status),
        }

    def depth(self, symbol: str, levels: int = 10) -> dict | None:
        """Aggregated book: ``bids``/``asks`` as ``[price, qty, order count]`` lists,
        best first, at most ``levels`` each. None for an unknown symbol."""
        book = self._books.get(symbol)
        if book is None:
            return None

        def side_depth(side: BookSide) -> list[list[int]]:
            keys = side.keys
            out = []
            for key in keys[: -levels - 1 : -1] if levels > 0 else ():
                level = side.levels[key]
                out.append([level.price, level.qty, level.count])
            return out

        return {
            "symbol": symbol,
            "status": _status_name(book.status),
            "position": self.position,
            "bids": side_depth(book.sides[BUY]),
            "asks": side_depth(book.sides[SELL]),
        }

    def order_status(self, order_id: int) -> dict | None:
        """A resting order's state; ``{"order_id", "status": "closed"}`` for an order
        that was filled, cancelled or never rested (the event log has its history);
        None for an id the engine never assigned."""
        order = self._orders.get(order_id)
        if order is None:
            if isinstance(order_id, int) and 0 < order_id <= self._last_order_id:
                return {"order_id": order_id, "status": "closed"}
            return None
        return {
            "order_id": order.order_id,
            "symbol": order.symbol,
            "account": order.account,
            "side": Side(order.side).name.lower(),
            "price": order.price,
            "open_qty": order.remaining,
            "filled_qty": order.filled,
            "tif": TimeInForce(order.tif).name,
            "post_only": order.post_only,
            "status": "partially_filled" if order.filled else "open",
        }


def _window(client: list) -> list[list[int]]:
    """A client's remembered commands as [seq, first position, count], oldest first."""
    ring, n = client[1], client[2]
    out = []
    for i in range(max(0, n - DEDUP_WINDOW), n):
        slot = i % DEDUP_WINDOW * 3
        out.append([ring[slot], ring[slot + 1], ring[slot + 2]])
    return out


def _fillable(opposite: BookSide, limit_key: int, account: str, qty: int) -> bool:
    """Whether ``qty`` can trade now against other accounts' orders (for FOK)."""
    levels = opposite.levels
    for key in reversed(opposite.keys):
        if key < limit_key:
            return False
        for o in levels[key].orders:
            if o.remaining and o.account != account:
                qty -= o.remaining
                if qty <= 0:
                    return True
    return False


def _match(
    events: list[Event],
    opposite: BookSide,
    limit_key: int,
    side: int,
    order_id: int,
    account: str,
    qty: int,
    symbol: str,
    cid: str,
    seq: int,
    ts: int,
) -> int:
    """Appends the trades (and self-trade cancels) of an incoming order against the
    current book without changing it; returns the quantity left over."""
    levels = opposite.levels
    keys = opposite.keys
    for i in range(len(keys) - 1, -1, -1):
        key = keys[i]
        if key < limit_key:
            break
        level = levels[key]
        price = level.price
        for o in level.orders:
            rest = o.remaining
            if not rest:
                continue
            if o.account == account:
                events.append(OrderCancelled(cid, seq, ts, o.order_id, symbol, R_SELF_TRADE, rest))
                continue
            if rest >= qty:
                events.append(
                    Trade(
                        cid, seq, ts, symbol, price, qty, side, o.order_id, order_id, rest - qty, 0
                    )
                )
                return 0
            qty -= rest
            events.append(
                Trade(cid, seq, ts, symbol, price, rest, side, o.order_id, order_id, 0, qty)
            )
    return qty
