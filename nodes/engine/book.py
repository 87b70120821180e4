"""In-memory order book structures: orders, price levels, book sides and instruments.

Speed matters more than elegance here. A side keeps its levels in a dict keyed by a
"key" that grows towards the best price (bids: ``price``, asks: ``-price``) and a sorted
list of those keys with the best one last, so the best level is ``keys[-1]`` for both
sides and removing it is ``keys.pop()``. Cancelled orders are only marked dead
(``remaining == 0``) in their level's deque and dropped lazily, which makes a cancel
O(1) while a level's deque still gives time priority.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque

import msgspec

from nodes.engine.types import InstrumentStatus


class Order(msgspec.Struct, gc=False):
    """A live order: resting in a level, or the incoming order of the current command.

    ``gc=False`` keeps the many orders out of the collector's work; the only cycle they
    take part in (order -> level -> deque -> order) is broken explicitly when a level
    is dropped (``BookSide.drop``) and dead orders leave their deque."""

    order_id: int
    account: str
    side: int
    price: int
    remaining: int
    filled: int
    tif: int
    order_type: int
    post_only: bool
    symbol: str
    level: Level | None = None


class Level:
    """All orders at one price of one side, oldest first; ``qty`` and ``count`` cover
    live orders only (dead ones may still sit in ``orders`` until dropped)."""

    __slots__ = ("count", "key", "orders", "price", "qty")

    def __init__(self, key: int, price: int) -> None:
        self.key = key
        self.price = price
        self.orders: deque[Order] = deque()
        self.qty = 0
        self.count = 0

    def live_orders(self) -> list[Order]:
        return [o for o in self.orders if o.remaining]


class BookSide:
    __slots__ = ("keys", "levels", "sign")

    def __init__(self, sign: int) -> None:
        self.sign = sign  # key = sign * price
        self.levels: dict[int, Level] = {}
        self.keys: list[int] = []

    def add(self, order: Order) -> None:
        key = self.sign * order.price
        level = self.levels.get(key)
        if level is None:
            level = self.levels[key] = Level(key, order.price)
            keys = self.keys
            if not keys or key > keys[-1]:
                keys.append(key)
            else:
                insort(keys, key)
        level.orders.append(order)
        level.qty += order.remaining
        level.count += 1
        order.level = level

    def drop(self, level: Level) -> None:
        """Removes an empty level; clearing its deque breaks order<->level cycles."""
        key = level.key
        del self.levels[key]
        keys = self.keys
        if keys[-1] == key:
            keys.pop()
        else:
            del keys[bisect_left(keys, key)]
        level.orders.clear()

    def best_first(self) -> list[Level]:
        levels = self.levels
        return [levels[k] for k in reversed(self.keys)]


class Book:
    """One instrument: its trading rules, status and both sides of its order book."""

    __slots__ = (
        "band_high",
        "band_low",
        "lot_size",
        "max_price",
        "min_price",
        "sides",
        "status",
        "symbol",
        "tick_size",
    )

    def __init__(
        self,
        symbol: str,
        tick_size: int,
        lot_size: int,
        band_low: int | None,
        band_high: int | None,
        status: int = InstrumentStatus.OPEN,
    ) -> None:
        self.symbol = symbol
        self.tick_size = tick_size
        self.lot_size = lot_size
        self.band_low = band_low
        self.band_high = band_high
        # the band as one chained comparison on the hot path: min_price <= p <= max_price
        self.min_price = 1 if band_low is None else band_low
        self.max_price = (1 << 63) - 1 if band_high is None else band_high
        self.status = int(status)
        # indexed by Side value; index 0 unused so that ``sides[3 - side]`` is the opposite
        self.sides = (None, BookSide(1), BookSide(-1))
