"""Simulated clients: one command at a time, each with a unique (client id, seq), sent again with
the SAME seq when no result came within the timeout (DESIGN §4 "Idempotent commands").

A client blocks on its reply list (BLPOP): it wakes when a result is pushed to it or when
its timeout expires, so it costs an event per wake-up, not per poll.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.simulation.simulator import Simulation

THINK = (1, 20)  # ticks between a result and the next command


class Client:
    __slots__ = ("cid", "deadline", "seq", "sim", "waiting")

    def __init__(self, sim: Simulation, cid: int) -> None:
        self.sim = sim
        self.cid = cid
        self.seq = 0
        self.waiting = False
        self.deadline = 0
        sim.at(sim.between(5, 30), self.on_wake, None)

    def wake(self) -> None:
        """A result was pushed to this client's reply list."""
        self.sim.at(self.sim.between(1, 3), self.on_wake, None)

    def reconnect(self) -> None:
        """After a network heal a client sends its outstanding command again at once."""
        if self.waiting:
            self.deadline = self.sim.now
            self.sim.at(1, self.on_wake, None)

    def on_wake(self, _: None) -> None:
        sim = self.sim
        redis = sim.redis
        if self.waiting:
            if self.seq in redis.replies.get(self.cid, ()):
                self.waiting = False  # answered; the checker saw the delivery itself
                sim.at(sim.between(*THINK), self.on_wake, None)
            elif sim.now >= self.deadline:
                redis.submit(self.cid, self.seq)  # the same command again, never a new seq
                sim.note(f"c{self.cid}", "retries", self.seq)
                self._wait()
            return
        if sim.clients_submit:
            self.seq += 1
            redis.submit(self.cid, self.seq)
            self._wait()

    def _wait(self) -> None:
        self.waiting = True
        self.deadline = self.sim.now + self.sim.timing.client_timeout
        self.sim.at(self.sim.timing.client_timeout, self.on_wake, None)
