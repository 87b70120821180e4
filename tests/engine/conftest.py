"""Shared actors for the engine tests: an engine with one instrument and two traders."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from nodes.engine import (
    AddInstrument,
    CancelOrder,
    Engine,
    Event,
    OrderType,
    PlaceOrder,
    ReplaceOrder,
    SetInstrumentStatus,
    Side,
    TimeInForce,
)

settings.register_profile(
    "engine",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("engine-thorough", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("ENGINE_HYPOTHESIS_PROFILE", "engine"))

SYMBOL = "ACME"
TICK = 5
LOT = 10


class Trader:
    """A client with its own account and sequence numbers, talking to one engine."""

    def __init__(self, engine: Engine, name: str, account: str | None = None) -> None:
        self.engine = engine
        self.client_id = name
        self.account = account or name
        self.seq = 0
        self.ts = 1_000

    def send(self, command_type: type, *args, **kwargs) -> list[Event]:
        self.seq += 1
        self.ts += 1
        cmd = command_type(self.client_id, self.seq, *args, timestamp=self.ts, **kwargs)
        return self.engine.process(cmd)

    def buy(self, qty: int, price: int = 0, **kw) -> list[Event]:
        return self.place(Side.BUY, qty, price, **kw)

    def sell(self, qty: int, price: int = 0, **kw) -> list[Event]:
        return self.place(Side.SELL, qty, price, **kw)

    def place(
        self,
        side: int,
        qty: int,
        price: int = 0,
        tif: int = TimeInForce.GTC,
        post_only: bool = False,
        symbol: str = SYMBOL,
        market: bool = False,
    ) -> list[Event]:
        order_type = OrderType.MARKET if market else OrderType.LIMIT
        if market and tif == TimeInForce.GTC:
            tif = TimeInForce.IOC
        return self.send(
            PlaceOrder, self.account, symbol, side, qty, price, order_type, tif, post_only
        )

    def cancel(self, order_id: int) -> list[Event]:
        return self.send(CancelOrder, self.account, order_id)

    def replace(self, order_id: int, price: int, qty: int) -> list[Event]:
        return self.send(ReplaceOrder, self.account, order_id, price, qty)


class Operator(Trader):
    def add(self, symbol: str = SYMBOL, tick: int = TICK, lot: int = LOT, **kw) -> list[Event]:
        return self.send(AddInstrument, symbol, tick, lot, **kw)

    def set_status(self, status: int, symbol: str = SYMBOL) -> list[Event]:
        return self.send(SetInstrumentStatus, symbol, status)


class RecordingEngine(Engine):
    """An engine that keeps the event log its ``process`` calls produced."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[Event] = []

    def process(self, command):
        events = super().process(command)
        self.log.extend(events)
        return events


def replay(events: list[Event]) -> Engine:
    follower = Engine()
    follower.apply_batch(events)
    return follower


@pytest.fixture
def engine() -> RecordingEngine:
    e = RecordingEngine()
    Operator(e, "ops").add()
    return e


@pytest.fixture
def ops(engine: Engine) -> Operator:
    op = Operator(engine, "ops")
    op.seq = 1  # the fixture engine already used seq 1 to add the instrument
    return op


@pytest.fixture
def alice(engine: Engine) -> Trader:
    return Trader(engine, "alice")


@pytest.fixture
def bob(engine: Engine) -> Trader:
    return Trader(engine, "bob")


@pytest.fixture
def carol(engine: Engine) -> Trader:
    return Trader(engine, "carol")


def kinds(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]
