"""The drill's load: client threads over Redis, each command with its own idempotency key.

Each client thread is one `wire.client.ClusterClient` (its own client id) that sends a
batch of place/cancel orders, waits for the committed result and, when an attempt times
out or Redis drops the connection, sends the SAME commands again (same client_id and
client_seq), as a real client does across a failover: the cluster must answer the
retry with the original result, never execute it twice. A client sends its next batch
only once the last one has an answer, so its sequence numbers reach the leader in order.

Every attempt and every answer goes to the history. The `Gate` lets the fault schedule
interleave faults with the load: the load takes commands up to the gate's limit, and
the schedule moves the limit on after it injected each fault.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from dataclasses import dataclass, field

import redis as redis_lib

from controlplane.drill.history import History, payload_digest
from nodes.engine import AddInstrument, CancelOrder, Command, OrderAccepted, PlaceOrder
from wire.client import ClusterClient, CommitTimeout, MalformedCommand
from wire.connection import RedisTarget

SYMBOL = "DRILL"
KIND_NAMES = {PlaceOrder: "place_order", CancelOrder: "cancel_order", AddInstrument: "add_instrument"}


class Gate:
    """How many of the `total` commands the load may take so far.

    The fault schedule raises the limit to the next fault's milestone; while a fault
    is in progress it lets the load flow freely (`flowing`), so that commands keep
    coming until the cluster has recovered, whatever the milestones say."""

    def __init__(self, limit: int, total: int) -> None:
        self._limit = limit
        self._total = total
        self._taken = 0
        self._flowing = False
        self._condition = threading.Condition()
        self._closed = False

    def flowing(self, on: bool) -> None:
        with self._condition:
            self._flowing = on
            self._condition.notify_all()

    @property
    def exhausted(self) -> bool:
        return self._taken >= self._total

    def take(self, wanted: int, stop: threading.Event) -> int:
        """Up to `wanted` commands once the limit allows any; 0 when stopped or closed."""
        with self._condition:
            while not stop.is_set():
                available = (self._total if self._flowing else self._limit) - self._taken
                if available > 0:
                    count = min(wanted, available)
                    self._taken += count
                    self._condition.notify_all()
                    return count
                if self._closed:
                    return 0
                self._condition.wait(0.2)
            return 0

    def raise_limit(self, limit: int) -> None:
        with self._condition:
            self._limit = max(self._limit, limit)
            self._condition.notify_all()

    def close(self, total: int) -> None:
        """No more commands past `total`: clients stop when it is reached."""
        with self._condition:
            self._limit = self._total = min(total, self._total)
            self._flowing = False
            self._closed = True
            self._condition.notify_all()

    @property
    def taken(self) -> int:
        return self._taken

    def wait_taken(self, count: int, stop: threading.Event, timeout: float) -> bool:
        """Until the load has taken `count` commands (it waits at the gate meanwhile)."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while self._taken < count and not stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(min(remaining, 0.2))
            return self._taken >= count


@dataclass
class LoadStats:
    """Counters the progress bar and the end of the run read (updated by the client threads)."""

    sent: int = 0
    committed: int = 0
    duplicates: int = 0
    retries: int = 0
    failed: int = 0
    unknown: int = 0
    last_commit_at: float = 0.0  # time.time() of the latest committed answer
    newest_committed_attempt: float = 0.0  # send time of the latest-sent attempt that got an answer
    errors: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count_error(self, error: BaseException) -> None:
        with self.lock:
            name = type(error).__name__
            self.errors[name] = self.errors.get(name, 0) + 1


@dataclass
class LoadOptions:
    cluster: str
    redis_url: str
    clients: int = 4
    rate: float = 250.0  # commands/s offered in all
    max_batch: int = 8
    attempt_timeout: float = 3.0  # seconds before an attempt is retried with the same keys
    seed: int = 0
    run_id: str = "drill"
    redis_target: RedisTarget | None = None  # Redis through Sentinel, instead of redis_url


class Load:
    """The client threads and what they share (gate, stats, history)."""

    def __init__(self, options: LoadOptions, history: History, gate: Gate) -> None:
        self.options = options
        self.history = history
        self.gate = gate
        self.stats = LoadStats()
        self.rate = options.rate  # commands/s offered now, in all (the drill adapts it to the faults)
        self.stop_sending = threading.Event()  # no new batches (the drill is ending)
        self.give_up_at: float | None = None  # monotonic: unanswered batches are "unknown" after it
        self.threads = [
            threading.Thread(target=self._client_loop, args=(index,), name=f"drill-client-{index}", daemon=True)
            for index in range(options.clients)
        ]

    def redis(self) -> redis_lib.Redis:
        # Through the Sentinels when the drill runs on a topology (REDIS_SENTINELS).
        target = self.options.redis_target or RedisTarget(self.options.redis_url)
        return target.client(socket_timeout=10, socket_connect_timeout=5)

    def add_instrument(self, timeout: float) -> None:
        """The instrument every order trades, committed before the load starts."""
        client = ClusterClient(self.options.cluster, self.redis(), client_id=f"{self.options.run_id}-setup",
                               timeout=self.options.attempt_timeout)  # fmt: skip
        command = AddInstrument(client_id=client.client_id, client_seq=client.next_seq(), symbol=SYMBOL)
        deadline = time.monotonic() + timeout
        results = self._attempts(client, [command], lambda: time.monotonic() > deadline)
        with contextlib.suppress(redis_lib.RedisError):
            client.close()
        if results is None:
            raise TimeoutError(f"the cluster did not commit the first command (AddInstrument {SYMBOL}) within {timeout:.0f} s")

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def finish(self, timeout: float) -> None:
        """Send no new batch; retry the unanswered ones for up to `timeout`, then call them unknown."""
        self.stop_sending.set()
        self.give_up_at = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(1.0, self.give_up_at - time.monotonic() + 15))

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self.threads)

    # -- one client thread ------------------------------------------------------------------

    def _client_loop(self, index: int) -> None:
        options = self.options
        rng = random.Random(f"{options.seed}:client:{index}")
        client = ClusterClient(options.cluster, self.redis(), client_id=f"{options.run_id}-c{index}",
                               timeout=options.attempt_timeout)  # fmt: skip
        accounts = [f"{options.run_id}-c{index}-a{k}" for k in range(3)]
        resting: list[tuple[str, int]] = []  # (account, order id) of orders it placed
        next_due = time.monotonic()
        try:
            while not self.stop_sending.is_set():
                count = self.gate.take(rng.randint(1, options.max_batch), self.stop_sending)
                if count == 0:
                    return
                delay = next_due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                next_due = max(next_due, time.monotonic() - 1.0) + count * options.clients / self.rate
                commands = [self._command(client, rng, accounts, resting) for _ in range(count)]
                results = self._attempts(client, commands, self._gave_up)
                for result in results or []:
                    event = result.events[0] if result.payloads else None
                    if isinstance(event, OrderAccepted) and not result.duplicate:
                        resting.append((event.account, event.order_id))
                del resting[:-50]
        finally:
            with contextlib.suppress(redis_lib.RedisError):
                client.close()

    def _gave_up(self) -> bool:
        return self.give_up_at is not None and time.monotonic() > self.give_up_at

    @staticmethod
    def _command(client: ClusterClient, rng: random.Random, accounts: list[str], resting: list) -> Command:
        if resting and rng.random() < 0.25:
            account, order_id = resting.pop(rng.randrange(len(resting)))
            return CancelOrder(client_id=client.client_id, client_seq=client.next_seq(), account=account, order_id=order_id)
        side = rng.choice((1, 2))
        offset = rng.randint(0, 8)
        price = 1000 - offset if side == 1 else 1000 + offset - 3  # a few cross: trades
        return PlaceOrder(
            client_id=client.client_id, client_seq=client.next_seq(), account=rng.choice(accounts),
            symbol=SYMBOL, side=side, qty=rng.randint(1, 9), price=price,
        )  # fmt: skip

    def _attempts(self, client: ClusterClient, commands: list, give_up) -> list | None:
        """Send the batch until it is answered, the same keys every time; None if given up."""
        attempt = 0
        while True:
            sent_at = time.time()
            try:
                entry = client.send(commands)
                attempt += 1
                for command in commands:
                    self.history.record("sent", client=command.client_id, seq=command.client_seq,
                                        kind=KIND_NAMES[type(command)], attempt=attempt, entry=entry, at=sent_at)  # fmt: skip
                with self.stats.lock:
                    if attempt == 1:
                        self.stats.sent += len(commands)
                    else:
                        self.stats.retries += 1
                results = client.wait(entry, self.options.attempt_timeout)
            except MalformedCommand as error:
                for command in commands:
                    self.history.record("failed", client=command.client_id, seq=command.client_seq, reason=str(error))
                with self.stats.lock:
                    self.stats.failed += len(commands)
                return None
            except (CommitTimeout, redis_lib.RedisError, OSError) as error:
                self.stats.count_error(error)
                if give_up():
                    self._unknown(commands, f"no answer after {attempt} attempt(s): {error}")
                    return None
                if not isinstance(error, CommitTimeout):
                    time.sleep(0.2)  # Redis down: don't spin
                continue
            self._committed(commands, results, sent_at)
            return results

    def _committed(self, commands: list, results: list, sent_at: float) -> None:
        now = time.time()
        for command, result in zip(commands, results, strict=True):
            self.history.record(
                "committed", client=command.client_id, seq=command.client_seq,
                position=result.first_position, count=len(result.payloads),
                digest=payload_digest(result.payloads), duplicate=result.duplicate,
                sent_at=sent_at, at=now,
            )  # fmt: skip
        with self.stats.lock:
            self.stats.committed += len(commands)
            self.stats.duplicates += sum(1 for result in results if result.duplicate)
            self.stats.last_commit_at = now
            self.stats.newest_committed_attempt = max(self.stats.newest_committed_attempt, sent_at)

    def _unknown(self, commands: list, reason: str) -> None:
        for command in commands:
            self.history.record("unknown", client=command.client_id, seq=command.client_seq, reason=reason)
        with self.stats.lock:
            self.stats.unknown += len(commands)
