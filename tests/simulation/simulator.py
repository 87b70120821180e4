"""The deterministic simulation of one seed: scheduler, network, and the run from faults to healing.

Everything is driven by one heap of timed events and one `random.Random(seed)`; nothing
reads the wall clock, the global random generator, or iterates a set of strings, so a
seed replays exactly. A run has two phases: `Options.steps` events with faults, then the
heal (every process restarted or resumed, the network calm, no new commands) until the
cluster converges, which is the liveness check.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Callable, Iterator
from heapq import heappop, heappush
from typing import Any

from nodes.protocol.quorum import default_write_quorum
from tests.simulation.clients import Client
from tests.simulation.controlplane import ControlPlane, Supervisor, SwitchoverDriver
from tests.simulation.faults import Faults
from tests.simulation.invariants import CONVERGENCE, LOGS_ARE_PREFIXES, Checker, Violation
from tests.simulation.node import Node
from tests.simulation.redis_model import Redis
from tests.simulation.rules import Options, Rules

TRACE_TAIL = 40  # events shown with a violation


class Outcome:
    """What a seed did: its violation (None: all invariants held) and its trace."""

    def __init__(self, sim: Simulation, violation: Violation | None) -> None:
        self.seed = sim.seed
        self.violation = violation
        self.steps = sim.steps
        self.time = sim.now
        self.trace = sim.trace
        self.shape = sim.shape()
        self._final = [tuple(node.log) for node in sim.nodes]

    @property
    def ok(self) -> bool:
        return self.violation is None

    def digest(self) -> str:
        """A hash of the whole trace and the final logs: equal for two runs of one seed."""
        data = repr((self.steps, self.time, self.trace, self._final)).encode()
        return hashlib.blake2b(data, digest_size=16).hexdigest()

    def lines(self) -> list[str]:
        return [format_event(event) for event in self.trace]


def format_event(event: tuple[int, str, str, tuple[Any, ...]]) -> str:
    time, actor, what, args = event
    return f"t={time:<5d} {actor:<10} {what} {' '.join(str(a) for a in args)}".rstrip()


class Simulation:
    """One seed's world: the nodes, the control plane, Redis, supervisors, clients, faults,
    the network between them, and the checker that watches them."""

    def __init__(self, seed: int, rules: Rules | None = None, options: Options | None = None) -> None:
        self.seed = seed
        self.rules = rules or Rules()
        self.options = options or Options()
        self.timing = self.options.timing
        self.rng = rng = random.Random(seed)
        self.random = rng.random
        self.now = 0
        self.steps = 0
        self._heap: list[tuple[int, int, Callable[[Any], None], Any]] = []
        self._order = itertools.count()
        self.trace: list[tuple[int, str, str, tuple[Any, ...]]] = []
        self.checker = Checker(self)

        replicas, quorum = self._draw_size()
        self.redis = Redis(fence=1, stream_keep=rng.choice((4, 8, 10_000)))
        self.nodes = [Node(self, i, f"n{i}.0") for i in range(replicas + 1)]
        self.max_nodes = replicas + 2
        self.cp = ControlPlane(self, replicas + 1, quorum)
        # The network: its usual loss, duplication and delay for this seed.
        self.loss = rng.choice((0.0, 0.01, 0.05, 0.15))
        self.duplicate = rng.choice((0.0, 0.0, 0.02, 0.1))
        self.max_delay = rng.choice((2, 5, 15))
        self.storm_until = 0
        self.supervisors = [Supervisor(self, k) for k in range(rng.choice((1, 2)))]
        self.network = f"loss={self.loss} dup={self.duplicate} delay<={self.max_delay}"
        self.clients_submit = True
        self.faults = Faults(self, self.options.scenario)
        for node in self.nodes:
            node.start()
        for supervisor in self.supervisors:
            supervisor.start()
        self.clients = [Client(self, cid) for cid in (1, 2)]

    def _draw_size(self) -> tuple[int, int]:
        """N followers and W, as given or drawn: mostly the majority default, often not."""
        rng = self.rng
        replicas = self.options.replicas or max(rng.choice((2, 2, 3, 3, 4)), self.options.quorum or 0)
        if self.options.quorum is not None:
            quorum = self.options.quorum
        elif rng.random() < 0.6:
            quorum = default_write_quorum(replicas)
        else:
            quorum = rng.randint(1, replicas)
        if not 1 <= quorum <= replicas:
            raise ValueError(f"write quorum {quorum} must be between 1 and the replica count {replicas}")
        return replicas, quorum

    def shape(self) -> str:
        return (
            f"N={len(self.cp.configs[0][1])} W={self.cp.configs[0][0]} supervisors={len(self.supervisors)} "
            f"{self.network} faults: {', '.join(self.faults.kinds) or 'none'}"
        )

    # -- the scheduler ---------------------------------------------------------------------

    def between(self, low: int, high: int) -> int:
        """rng.randint(low, high), at a fifth of its cost (it is called for nearly every event)."""
        return low + int(self.random() * (high - low + 1))

    def at(self, delay: int, fn: Callable[[Any], None], arg: Any = None) -> None:
        """Run fn(arg) `delay` ticks from now; events at the same tick run in the order scheduled."""
        heappush(self._heap, (self.now + delay, next(self._order), fn, arg))

    def note(self, actor: str, what: str, *args: Any) -> None:
        self.trace.append((self.now, actor, what, args))

    def violation(self, invariant: str, detail: str) -> Violation:
        tail = [format_event(event) for event in self.trace[-TRACE_TAIL:]]
        return Violation(invariant, detail, self.seed, self.now, tail)

    def _run_events(self, limit: int) -> None:
        heap = self._heap
        check_all = self.checker.check_all if self.options.paranoid else None
        steps = 0
        try:
            while heap and steps < limit:
                time, _, fn, arg = heappop(heap)
                self.now = time
                steps += 1
                fn(arg)
                if check_all is not None:
                    check_all()
        finally:
            self.steps += steps

    def run(self) -> Outcome:
        try:
            self._run_events(self.options.steps)
            if self.options.liveness:
                self._heal()
        except Violation as violation:
            return Outcome(self, violation)
        return Outcome(self, None)

    # -- the network -------------------------------------------------------------------------

    def post(self, sender: Node | None, fn: Callable[[Any], None], arg: Any) -> None:
        """A message: maybe lost, delayed (more from a slow node), maybe duplicated."""
        random = self.random
        now = self.now
        loss = self.loss if now >= self.storm_until else 0.3
        if loss and random() < loss:
            return
        delay = 1 + int(random() * self.max_delay)
        if sender is not None and sender.slow_until > now:
            delay += self.between(20, 80)
        heappush(self._heap, (now + delay, next(self._order), fn, arg))
        if self.duplicate and random() < self.duplicate:
            self.at(delay + self.between(1, 30), fn, arg)

    def on_ack_arrives(self, ack: tuple[Node, int, int, str, str]) -> None:
        """The fenced ack script: refused unless the fence is the ack's term."""
        node, term, position, archive_id, wrong = ack
        if self.rules.fenced_delivery and self.redis.fence != term:
            return
        if wrong:
            self.checker.fail(LOGS_ARE_PREFIXES, wrong)
        self.redis.acks.append((node.name, position, term, archive_id))

    # -- cluster changes the faults ask for ----------------------------------------------------

    def add_node(self) -> None:
        idx = len(self.nodes)
        node = Node(self, idx, f"n{idx}.0")
        self.nodes.append(node)
        self.cp.add(idx)
        node.start()

    def start_switchover(self, target: int) -> None:
        switchover = self.cp.start_switchover(target)
        if switchover is not None:
            SwitchoverDriver(self, switchover)

    def acting_leader(self, term: int) -> Node | None:
        for node in self.nodes:
            role = node.role
            if role is not None and role.leads and role.term == term and node.alive:
                return node
        return None

    def acting_leaders(self) -> Iterator[Node]:
        for node in self.nodes:
            if node.alive and node.role is not None and node.role.leads:
                yield node

    # -- healing and convergence -------------------------------------------------------------

    def _heal(self) -> None:
        self.note("sim", "HEAL: every process back, network calm, no new commands")
        self.faults.stop()
        for node in self.nodes:
            if node.removed:
                continue
            if not node.alive:
                node.start()
            elif node.paused:
                node.resume()
            node.slow_until = 0
            node.cut_until = 0
        for supervisor in self.supervisors:
            if not supervisor.alive:
                supervisor.start()
        self.cp.down_until = 0
        self.loss = 0.0
        self.duplicate = 0.0
        self.max_delay = min(self.max_delay, 5)
        self.storm_until = 0
        self.clients_submit = False
        for client in self.clients:
            client.reconnect()
        budget = self.options.heal_steps
        why = "no event left"
        while budget > 0 and self._heap:
            self._run_events(16)
            budget -= 16
            why = self.unconverged()
            if not why:
                assert self.cp.leader is not None  # converged: there is a leader
                self.checker.final(self.nodes[self.cp.leader])
                return
        raise self.violation(CONVERGENCE, f"not converged {self.options.heal_steps} events after healing: {why}")

    def unconverged(self) -> str:
        """Why the healed cluster has not converged yet ("" once it has)."""
        cp = self.cp
        if cp.leader is None:
            return f"no leader in term {cp.term}"
        leader = self.nodes[cp.leader]
        role = leader.role
        if not leader.alive or role is None or not role.leads or role.term != cp.term:
            return f"{leader.name} is not leading term {cp.term} yet"
        for client in self.clients:
            if client.waiting:
                return f"client c{client.cid} still waits for #{client.seq}"
        for m in cp.members:
            node = self.nodes[m]
            if node.log != leader.log:
                return f"{node.name} holds {len(node.log)} entries, the leader {len(leader.log)}"
        return ""


def run_seed(seed: int, rules: Rules | None = None, options: Options | None = None) -> Outcome:
    return Simulation(seed, rules, options).run()
