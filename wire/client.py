"""A Python client of a cluster, straight over Redis: submit commands, get committed results.

    client = ClusterClient("demo")
    result = client.submit(PlaceOrder(client_id=client.client_id, client_seq=client.next_seq(), ...))
    result.events  # the committed events of the command

A command is added to the cluster's command stream (a batch is one entry), and the
client waits on its own reply list for the leader to report the result after commit.
On timeout the client says why: too few replicas acknowledging, or no leader answering.
The command stays in the stream and is executed once; re-submitting it with the same
client_seq answers with the original result (RESULT_DUPLICATE). `submit_many(...,
resend_after=S)` does that itself: a batch lost with a Redis primary that failed over
(asynchronous replication) is sent again and executed once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis as redis_lib

import wire
from nodes.engine import decode_event, encode_command
from wire import signing
from wire.connection import RedisTarget
from wire.redisconn import DirectConnection

RECEIVE_COUNT = 1000  # replies taken in one round trip
RECEIVE_BLOCK_S = 10  # how long an outstanding pop waits on the server before it is sent again


class SubmitError(Exception):
    """A submission that did not get its committed result."""


class CommitTimeout(SubmitError):
    pass


class NotEnoughReplicas(CommitTimeout):
    pass


class MalformedCommand(SubmitError):
    pass


class CommandRefused(SubmitError):
    """The leader refused the batch or a command of it (trading permissions, signature)."""


@dataclass
class CommandResult:
    status: int
    first_position: int
    payloads: list[bytes]
    error: str = ""
    _events: list | None = field(default=None, repr=False)

    @property
    def duplicate(self) -> bool:
        return self.status == wire.RESULT_DUPLICATE

    @property
    def events(self) -> list:
        if self._events is None:
            self._events = [decode_event(payload) for payload in self.payloads]
        return self._events


class ClusterClient:
    def __init__(
        self,
        cluster: str,
        redis: redis_lib.Redis | RedisTarget | str = "redis://127.0.0.1:6379/0",
        *,
        client_id: str | None = None,
        timeout: float = 5.0,
        signing_key: tuple[str, bytes | str] | None = None,
    ) -> None:
        self.cluster = cluster
        if isinstance(redis, str):
            redis = RedisTarget.from_env(redis)  # REDIS_SENTINELS, when set, win
        self.redis = redis.client() if isinstance(redis, RedisTarget) else redis
        self.client_id = client_id or f"client-{uuid.uuid4().hex[:12]}"
        self.timeout = timeout
        self.commands_key = wire.commands_key(cluster)
        # One reply list per client object, so concurrent clients never steal replies.
        self.reply_key = wire.reply_key(cluster, f"{self.client_id}-{uuid.uuid4().hex[:8]}")
        # Connections of our own, without redis-py's per-call cost (wire.redisconn):
        # one thread may send while another receives.
        self._send_line = DirectConnection(self.redis)
        self._receive_line = DirectConnection(self.redis)
        self._receiving = False  # a BLMPOP is outstanding on the receive connection
        self._seq = time.time_ns() // 1000
        # (key id, secret): every batch is signed, as a cluster with trading checks requires.
        self.signer = signing.BatchSigner(cluster, *signing_key) if signing_key else None
        self._outstanding: dict[str, int] = {}
        self._results: dict[str, list[CommandResult]] = {}

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # -- one call: send and wait ---------------------------------------------------------

    def submit(self, command, timeout: float | None = None) -> CommandResult:
        return self.submit_many([command], timeout)[0]

    def submit_many(
        self, commands: Sequence, timeout: float | None = None, resend_after: float | None = None
    ) -> list[CommandResult]:
        """Send one batch and wait for its results. With `resend_after`, a batch still
        unanswered after that many seconds is sent again with the same client_seq (and
        again, until `timeout`): the first answer to any copy wins, the engine runs the
        command once (a copy of one already run answers with the original result)."""
        if resend_after is None:
            return self.wait(self.send(commands), timeout)
        encoded = [encode_command(command) for command in commands]
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        sent: list[str] = []
        while True:
            remaining = deadline - time.monotonic()
            try:
                sent.append(self.send_encoded(encoded))
                return self.wait_any(sent, min(resend_after, remaining), give_up=remaining <= resend_after)
            except (CommitTimeout, redis_lib.ConnectionError, redis_lib.TimeoutError):
                if time.monotonic() >= deadline:
                    for entry_id in sent:
                        self._outstanding.pop(entry_id, None)
                    raise
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    # -- pipelined use: send many batches, collect results --------------------------------

    def send(self, commands: Sequence) -> str:
        return self.send_encoded([encode_command(command) for command in commands])

    def send_encoded(self, encoded: Sequence[bytes]) -> str:
        payload = wire.encode(list(encoded))
        signed = self.signer.args(self.reply_key, payload) if self.signer is not None else ()
        entry_id = self._send_line.call(
            "XADD", self.commands_key, "*", "r", self.reply_key, "c", payload, *signed
        )
        entry_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        self._outstanding[entry_id] = len(encoded)
        return entry_id

    def receive(self, timeout: float) -> list[tuple[str, list[CommandResult]]]:
        """Results that arrived within `timeout` (0: only those already here): (entry id,
        results) per command batch. One blocking pop stays outstanding on the client's
        receive connection and takes every reply waiting at once (BLMPOP ... COUNT), so a
        client that sends and receives in one thread polls with receive(until next send)
        without a round trip per poll."""
        line = self._receive_line
        deadline = time.monotonic() + timeout
        while True:
            if not self._receiving:
                line.send((("BLMPOP", RECEIVE_BLOCK_S, 1, self.reply_key, "LEFT", "COUNT", RECEIVE_COUNT),))
                self._receiving = True
            try:
                ready = line.ready(max(0.0, deadline - time.monotonic()))
            except BaseException:
                # The connection broke (a Redis restart, a Sentinel failover): the pop we
                # sent is gone with it, so send a new one next time. Left set, every later
                # call would wait for a reply on a fresh connection that asked nothing.
                self._receiving = False
                raise
            if not ready:
                return []
            self._receiving = False
            reply = line.receive(1)[0]
            if reply is not None:
                return self._parse(reply[1])
            if time.monotonic() >= deadline:
                return []  # the pop timed out on the server with nothing: ask again next time

    def _parse(self, messages: list[bytes]) -> list[tuple[str, list[CommandResult]]]:
        out = []
        for message in messages:
            entry_id, results = wire.decode(message)
            if self._outstanding.pop(entry_id, None) is None:
                continue  # a reply to a batch we gave up on
            out.append((entry_id, [CommandResult(*result) for result in results]))
        return out

    def wait(self, entry_id: str, timeout: float | None = None) -> list[CommandResult]:
        return self.wait_any([entry_id], timeout)

    def wait_any(self, entry_ids: Sequence[str], timeout: float | None = None, give_up: bool = True) -> list[CommandResult]:
        """The results of whichever of `entry_ids` (copies of one batch) is answered first;
        CommitTimeout after `timeout`, forgetting the entries only if `give_up`."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not any(entry_id in self._results for entry_id in entry_ids):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if give_up:
                    for entry_id in entry_ids:
                        self._outstanding.pop(entry_id, None)
                raise self.timeout_error()
            for got_id, results in self.receive(min(remaining, 1.0)):
                self._results[got_id] = results
        answered = next(entry_id for entry_id in entry_ids if entry_id in self._results)
        for entry_id in entry_ids:  # the other copies' answers, if they come, are dropped
            self._outstanding.pop(entry_id, None)
            if entry_id != answered:
                self._results.pop(entry_id, None)
        results = self._results.pop(answered)
        for result in results:
            if result.status == wire.RESULT_MALFORMED:
                raise MalformedCommand(result.error)
            if result.status == wire.RESULT_REFUSED:
                raise CommandRefused(result.error)
        return results

    def commit_status(self) -> dict[str, str]:
        raw = self.redis.hgetall(wire.commit_key(self.cluster))
        return {key.decode(): value.decode() for key, value in raw.items()}

    def timeout_error(self) -> CommitTimeout:
        status = self.commit_status()
        if not status:
            return CommitTimeout(
                f"no committed result within the timeout: cluster {self.cluster} has no leader "
                "reporting; the command stays queued and runs once a leader takes it"
            )
        write_quorum = int(status.get("write_quorum", status.get("replica_count", 0)))
        live = [name for name in status.get("live_followers", "").split(",") if name]
        age = (time.time_ns() - int(status.get("updated_ns", 0))) / 1e9
        if age > 5:
            return CommitTimeout(
                f"no committed result within the timeout: leader {status.get('leader')} has not "
                f"reported for {age:.0f} s; the command stays queued for the next leader"
            )
        if len(live) < write_quorum:
            return NotEnoughReplicas(
                f"not enough replicas: the write quorum is {write_quorum} but only {len(live)} "
                f"follower(s) acknowledge ({', '.join(live) or 'none'}); the command is kept "
                "and commits when enough followers are back"
            )
        return CommitTimeout(
            f"no committed result within the timeout (commit position "
            f"{status.get('commit_position')}, leader at {status.get('leader_position')})"
        )

    def close(self) -> None:
        self.redis.delete(self.reply_key)
        self._send_line.close()
        self._receive_line.close()
