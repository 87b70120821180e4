"""A naive reference engine, for tests only: the same rules as ``nodes.engine`` written
as plainly as possible (lists and sorting, no indexes, no lazy deletion), so generated
command streams can check the fast engine event by event and book by book."""

from __future__ import annotations

from dataclasses import dataclass

from nodes.engine import (
    DEDUP_WINDOW,
    AddInstrument,
    CancelOrder,
    Command,
    CommandDuplicate,
    Event,
    InstrumentAdded,
    InstrumentStatus,
    InstrumentStatusChanged,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    OrderReplaced,
    OrderType,
    PlaceOrder,
    Reason,
    ReplaceOrder,
    SetInstrumentStatus,
    Side,
    TimeInForce,
    Trade,
)


@dataclass
class RefOrder:
    order_id: int
    account: str
    symbol: str
    side: int
    price: int
    remaining: int
    tif: int
    post_only: bool
    time: int  # time priority: lower is older


class ReferenceEngine:
    def __init__(self) -> None:
        self.instruments: dict[str, dict] = {}
        self.resting: list[RefOrder] = []
        self.clients: dict[str, tuple[int, list[tuple[int, int, int]]]] = {}
        self.position = 0
        self.last_order_id = 0
        self.clock = 0

    # ---------------------------------------------------------------- public

    def process(self, cmd: Command) -> list[Event]:
        events = self._decide(cmd)
        first = events[0]
        recorded = not isinstance(first, CommandDuplicate) and not (
            isinstance(first, OrderRejected)
            and first.reason in (Reason.INVALID_SEQUENCE, Reason.STALE_SEQUENCE)
        )
        if recorded:
            _, window = self.clients.get(cmd.client_id, (0, []))
            window = [*window, (cmd.client_seq, self.position + 1, len(events))][-DEDUP_WINDOW:]
            self.clients[cmd.client_id] = (cmd.client_seq, window)
        self.position += len(events)
        return events

    def book(self) -> dict[tuple[str, int], list[tuple[int, str, int, int]]]:
        """Resting orders per (symbol, side) in priority order."""
        out: dict[tuple[str, int], list[tuple[int, str, int, int]]] = {}
        for symbol in self.instruments:
            for side in (Side.BUY, Side.SELL):
                orders = self._priority(
                    [o for o in self.resting if o.symbol == symbol and o.side == side], side
                )
                out[(symbol, side)] = [
                    (o.order_id, o.account, o.price, o.remaining) for o in orders
                ]
        return out

    # --------------------------------------------------------------- private

    @staticmethod
    def _priority(orders: list[RefOrder], side: int) -> list[RefOrder]:
        if side == Side.BUY:
            return sorted(orders, key=lambda o: (-o.price, o.time))
        return sorted(orders, key=lambda o: (o.price, o.time))

    def _decide(self, cmd: Command) -> list[Event]:
        cid, seq, ts = cmd.client_id, cmd.client_seq, cmd.timestamp
        head = (cid, seq, ts)
        if not cid or seq < 1:
            return [OrderRejected(*head, Reason.INVALID_SEQUENCE, 0)]
        if cid in self.clients and seq <= self.clients[cid][0]:
            for s, pos, count in self.clients[cid][1]:
                if s == seq:
                    return [CommandDuplicate(*head, pos, count)]
            return [OrderRejected(*head, Reason.STALE_SEQUENCE, 0)]
        if isinstance(cmd, AddInstrument):
            return self._add(cmd, head)
        if isinstance(cmd, SetInstrumentStatus):
            if cmd.symbol not in self.instruments:
                return [OrderRejected(*head, Reason.UNKNOWN_INSTRUMENT, 0)]
            if cmd.status not in set(InstrumentStatus):
                return [OrderRejected(*head, Reason.INVALID_COMMAND, 0)]
            self.instruments[cmd.symbol]["status"] = cmd.status
            return [InstrumentStatusChanged(*head, cmd.symbol, cmd.status)]
        if isinstance(cmd, PlaceOrder):
            return self._place(cmd, head)
        if isinstance(cmd, CancelOrder):
            return self._cancel(cmd, head)
        if isinstance(cmd, ReplaceOrder):
            return self._replace(cmd, head)
        raise TypeError(cmd)

    def _add(self, cmd: AddInstrument, head: tuple) -> list[Event]:
        if cmd.symbol in self.instruments:
            return [OrderRejected(*head, Reason.INSTRUMENT_EXISTS, 0)]
        low, high = cmd.band_low, cmd.band_high
        if not cmd.symbol or cmd.tick_size < 1 or cmd.lot_size < 1:
            return [OrderRejected(*head, Reason.INVALID_COMMAND, 0)]
        if (low is not None and low < 1) or (high is not None and high < 1):
            return [OrderRejected(*head, Reason.INVALID_COMMAND, 0)]
        if low is not None and high is not None and low > high:
            return [OrderRejected(*head, Reason.INVALID_COMMAND, 0)]
        self.instruments[cmd.symbol] = {
            "tick": cmd.tick_size, "lot": cmd.lot_size, "low": low, "high": high,
            "status": InstrumentStatus.OPEN,
        }  # fmt: skip
        return [InstrumentAdded(*head, cmd.symbol, cmd.tick_size, cmd.lot_size, low, high)]

    def _status_reject(self, inst: dict, head: tuple, order_id: int) -> list[Event] | None:
        if inst["status"] == InstrumentStatus.HALTED:
            return [OrderRejected(*head, Reason.INSTRUMENT_HALTED, order_id)]
        if inst["status"] == InstrumentStatus.CANCEL_ONLY:
            return [OrderRejected(*head, Reason.INSTRUMENT_CANCEL_ONLY, order_id)]
        return None

    @staticmethod
    def _outside_band(inst: dict, price: int) -> bool:
        return (inst["low"] is not None and price < inst["low"]) or (
            inst["high"] is not None and price > inst["high"]
        )

    def _crossing(self, symbol: str, side: int, price: int | None) -> list[RefOrder]:
        """Opposite orders an order at ``price`` (None: market) would meet, in priority."""
        opposite = Side.SELL if side == Side.BUY else Side.BUY
        orders = [o for o in self.resting if o.symbol == symbol and o.side == opposite]
        if price is not None:
            if side == Side.BUY:
                orders = [o for o in orders if o.price <= price]
            else:
                orders = [o for o in orders if o.price >= price]
        return self._priority(orders, opposite)

    def _place(self, cmd: PlaceOrder, head: tuple) -> list[Event]:
        inst = self.instruments.get(cmd.symbol)
        if inst is None:
            return [OrderRejected(*head, Reason.UNKNOWN_INSTRUMENT, 0)]
        rejected = self._status_reject(inst, head, 0)
        if rejected:
            return rejected
        bad = OrderRejected(*head, Reason.INVALID_COMMAND, 0)
        if cmd.side not in (Side.BUY, Side.SELL) or cmd.qty <= 0:
            return [bad]
        if cmd.tif not in set(TimeInForce):
            return [bad]
        if cmd.order_type == OrderType.LIMIT:
            if cmd.price <= 0 or (cmd.post_only and cmd.tif != TimeInForce.GTC):
                return [bad]
            if cmd.price % inst["tick"]:
                return [OrderRejected(*head, Reason.BAD_TICK, 0)]
            if self._outside_band(inst, cmd.price):
                return [OrderRejected(*head, Reason.OUTSIDE_PRICE_BAND, 0)]
            limit = cmd.price
        elif cmd.order_type == OrderType.MARKET:
            if cmd.price != 0 or cmd.tif == TimeInForce.GTC or cmd.post_only:
                return [bad]
            limit = None
        else:
            return [bad]
        if cmd.qty % inst["lot"]:
            return [OrderRejected(*head, Reason.BAD_LOT, 0)]
        crossing = self._crossing(cmd.symbol, cmd.side, limit)
        if crossing and cmd.post_only:
            return [OrderRejected(*head, Reason.POST_ONLY_WOULD_CROSS, 0)]
        if cmd.tif == TimeInForce.FOK:
            available = sum(o.remaining for o in crossing if o.account != cmd.account)
            if available < cmd.qty:
                return [OrderRejected(*head, Reason.FOK_NOT_FILLABLE, 0)]
        self.last_order_id += 1
        order = RefOrder(
            self.last_order_id, cmd.account, cmd.symbol, cmd.side, cmd.price, cmd.qty, cmd.tif,
            cmd.post_only, 0,
        )  # fmt: skip
        events: list[Event] = [
            OrderAccepted(
                *head, order.order_id, cmd.symbol, cmd.account, cmd.side, cmd.order_type,
                cmd.price, cmd.qty, cmd.tif, cmd.post_only,
            )
        ]  # fmt: skip
        self._match(order, crossing, events, head)
        if order.remaining:
            if cmd.tif == TimeInForce.GTC:
                self._rest(order)
            else:
                events.append(
                    OrderCancelled(*head, order.order_id, order.symbol, Reason.UNFILLED,
                                   order.remaining)
                )  # fmt: skip
        return events

    def _match(self, taker: RefOrder, crossing: list[RefOrder], events: list, head: tuple) -> None:
        for maker in crossing:
            if not taker.remaining:
                return
            if maker.account == taker.account:
                self.resting.remove(maker)
                events.append(
                    OrderCancelled(*head, maker.order_id, maker.symbol, Reason.SELF_TRADE,
                                   maker.remaining)
                )  # fmt: skip
                continue
            qty = min(maker.remaining, taker.remaining)
            maker.remaining -= qty
            taker.remaining -= qty
            if not maker.remaining:
                self.resting.remove(maker)
            events.append(
                Trade(*head, taker.symbol, maker.price, qty, taker.side, maker.order_id,
                      taker.order_id, maker.remaining, taker.remaining)
            )  # fmt: skip

    def _rest(self, order: RefOrder) -> None:
        self.clock += 1
        order.time = self.clock
        self.resting.append(order)

    def _find(self, order_id: int) -> RefOrder | None:
        for o in self.resting:
            if o.order_id == order_id:
                return o
        return None

    def _cancel(self, cmd: CancelOrder, head: tuple) -> list[Event]:
        order = self._find(cmd.order_id)
        if order is None:
            return [OrderRejected(*head, Reason.UNKNOWN_ORDER, cmd.order_id)]
        if order.account != cmd.account:
            return [OrderRejected(*head, Reason.NOT_ORDER_OWNER, cmd.order_id)]
        if self.instruments[order.symbol]["status"] == InstrumentStatus.HALTED:
            return [OrderRejected(*head, Reason.INSTRUMENT_HALTED, cmd.order_id)]
        self.resting.remove(order)
        return [
            OrderCancelled(*head, order.order_id, order.symbol, Reason.REQUESTED, order.remaining)
        ]

    def _replace(self, cmd: ReplaceOrder, head: tuple) -> list[Event]:
        oid = cmd.order_id
        order = self._find(oid)
        if order is None:
            return [OrderRejected(*head, Reason.UNKNOWN_ORDER, oid)]
        if order.account != cmd.account:
            return [OrderRejected(*head, Reason.NOT_ORDER_OWNER, oid)]
        inst = self.instruments[order.symbol]
        rejected = self._status_reject(inst, head, oid)
        if rejected:
            return rejected
        if cmd.price <= 0 or cmd.qty <= 0:
            return [OrderRejected(*head, Reason.INVALID_COMMAND, oid)]
        if cmd.price % inst["tick"]:
            return [OrderRejected(*head, Reason.BAD_TICK, oid)]
        if cmd.qty % inst["lot"]:
            return [OrderRejected(*head, Reason.BAD_LOT, oid)]
        if self._outside_band(inst, cmd.price):
            return [OrderRejected(*head, Reason.OUTSIDE_PRICE_BAND, oid)]
        if cmd.price == order.price and cmd.qty <= order.remaining:
            order.remaining = cmd.qty
            return [OrderReplaced(*head, oid, order.symbol, cmd.price, cmd.qty, True)]
        crossing = self._crossing(order.symbol, order.side, cmd.price)
        if crossing and order.post_only:
            return [OrderRejected(*head, Reason.POST_ONLY_WOULD_CROSS, oid)]
        self.resting.remove(order)
        order.price = cmd.price
        order.remaining = cmd.qty
        events: list[Event] = [OrderReplaced(*head, oid, order.symbol, cmd.price, cmd.qty, False)]
        self._match(order, crossing, events, head)
        if order.remaining:
            self._rest(order)
        return events
