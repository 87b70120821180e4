"""Faults drawn from the seed, within the promise of DESIGN §4.

Each seed enables a random subset of the fault kinds with random weights ("swarm testing":
a seed that never crashes anything explores pauses and slow networks deeply, and the other
way round). A scenario biases the draw towards one path; "mixed" is the default.

The one budget: the promise holds "as long as no more than W nodes lose their archive at
once". An archive loss or a removal (whose archive leaves the cluster) is allowed only
while no earlier one is still open. One is closed once the control plane has seen the new
archive and counts no one as a new empty replica, every committed position is held again
by W + 1 member nodes, and elections no longer count the node (the election window moved
past it), so that no election waits forever on a node that is gone. W is at least 1 here
(W = 0 gives up the promise by design).
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.simulation.controlplane import Supervisor
    from tests.simulation.node import Node
    from tests.simulation.simulator import Simulation

# kind -> the DESIGN §4 rule it exercises
KINDS: dict[str, str] = {
    "crash": "Rejoin, Archive identity (replay before live), Lease",
    "crash_leader": "Election restriction, Election quorum, Fencing",
    "pause": "Fencing (a paused process resumes with stale beliefs)",
    "pause_leader": "Fencing, Lease: the deposed leader paths",
    "archive_loss": "Archive identity (new empty replica), Commit rule (acks of a reset archive)",
    "redis_loss": "Missing fence, Catch-up, Idempotent commands (pending commands and replies lost)",
    "clock_step": "Lease, Liveness (one clock for judgements: the database's)",
    "slow": "Election quorum (reports built before the fence moved), Lease",
    "partition": "Lease, Fencing: a node cut off from the control plane keeps its old role until the fence stops it",
    "partition_leader": "Fencing, Lease: the deposed leader paths, with the leader still running",
    "network": "every rule: messages lost, duplicated, reordered",
    "supervisor_crash": "Fencing (database first, then the fence; the next cycle restores it)",
    "cp_outage": "Lease (no renewal answered), One leader per term: the control plane's database restarts",
    "switchover": "One leader per term (compare-and-set), switchover without loss",
    "write_quorum": "Replicas and quorum, Election quorum (lowest W in force)",
    "remove": "Commit rule (acks of removed nodes), Election quorum (removed nodes still count)",
    "add": "Archive identity (a new empty node), Catch-up",
}

OPERATOR_ACTIONS = frozenset({"switchover", "write_quorum", "remove", "add"})  # control-plane transactions

# Weights are multiplied into the seed's own draw; a kind a scenario does not name is off.
# Each biased scenario makes one loss path common (the Rules flag that opens it in brackets):
# failover: leaders crash, pause and go quiet (election, report_freshness);
# deposed: a leader cut off or paused while its followers lag (fenced_delivery);
# archive-loss: empty restarts, leaders included (archive_identity);
# quorum: W and membership change between quick failovers (quorum_window);
# rejoin: deposed leaders truncate at rejoin while archives are lost (truncation).
SCENARIOS: dict[str, dict[str, float]] = {
    "mixed": {},  # every kind
    "failover": {"crash_leader": 4, "pause_leader": 2, "slow": 2, "crash": 2, "cp_outage": 1, "switchover": 0.5},
    "deposed": {"partition_leader": 6, "pause": 6, "pause_leader": 2, "slow": 1, "crash": 0.2},
    "archive-loss": {"archive_loss": 6, "crash_leader": 1, "pause": 0.5},
    "quorum": {"write_quorum": 2, "remove": 5, "add": 4, "crash_leader": 4, "pause_leader": 4, "partition_leader": 2},
    "rejoin": {"partition_leader": 4, "pause_leader": 4, "archive_loss": 3, "crash": 1},
    "calm": {},  # no faults: only the network's usual loss and delay
}


class Faults:
    def __init__(self, sim: Simulation, scenario: str) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; scenarios: {', '.join(SCENARIOS)}")
        self.sim = sim
        rng = sim.rng
        bias = SCENARIOS[scenario]
        unlisted = 1.0 if scenario == "mixed" else 0.0  # a scenario runs only the kinds it names
        kinds, weights = [], []
        for kind in KINDS:
            weight = (rng.random() if rng.random() < 0.7 else 0.0) * bias.get(kind, unlisted)
            if weight > 0:
                kinds.append(kind)
                weights.append(weight)
        self.kinds = kinds
        self.weights = weights
        self.cumulative = list(itertools.accumulate(weights))
        self.gap = rng.choice((8, 15, 30))  # mean ticks between faults
        self.die_before_fence = rng.choice((0.0, 0.0, 0.3))
        self.open: list[tuple[Node, int, int]] = []  # archive losses and removals: (node, config index, term)
        self.active = bool(kinds)
        self.next_archive = 0
        if self.active:
            sim.at(sim.between(10, 2 * self.gap), self.on_fault, None)

    def stop(self) -> None:
        self.active = False

    def supervisor_dies_before_fence(self) -> bool:
        """A supervisor crashing between committing a term and raising the fence."""
        return self.active and self.die_before_fence > 0 and self.sim.rng.random() < self.die_before_fence

    def on_fault(self, _: None) -> None:
        if not self.active:
            return
        sim = self.sim
        sim.at(sim.between(1, 2 * self.gap), self.on_fault, None)
        kind = sim.rng.choices(self.kinds, cum_weights=self.cumulative)[0]
        if kind in OPERATOR_ACTIONS and sim.cp.down_until > sim.now:
            return  # the operator's request fails: the database is down
        getattr(self, "_" + kind)()

    # -- helpers --------------------------------------------------------------------------

    def _pick(self, nodes: list[Node]) -> Node | None:
        return self.sim.rng.choice(nodes) if nodes else None

    def _running(self) -> list[Node]:
        return [n for n in self.sim.nodes if n.alive and not n.removed]

    def _leader(self) -> Node | None:
        leaders = [n for n in self.sim.nodes if n.alive and n.role is not None and n.role.leads]
        return self._pick(leaders)

    def _down_for(self, node: Node, ticks: int) -> None:
        sim = self.sim
        node.crash()
        sim.at(ticks, self._restart, (node, node.down_token))

    def _restart(self, message: tuple[Node, int]) -> None:
        node, token = message
        if token == node.down_token and not node.alive and not node.removed:
            node.start()
            self.sim.note(node.name, "restarts", len(node.log), node.archive_id)

    # -- the faults ----------------------------------------------------------------------

    def _crash(self, node: Node | None = None) -> None:
        node = node or self._pick(self._running())
        if node is not None:
            self.sim.note(node.name, "CRASH")
            self._down_for(node, self.sim.between(5, 150))

    def _crash_leader(self) -> None:
        self._crash(self._leader())

    def _pause(self, node: Node | None = None) -> None:
        sim = self.sim
        node = node or self._pick([n for n in self._running() if not n.paused])
        if node is None or node.paused:
            return
        node.paused = True
        sim.note(node.name, "PAUSE")
        sim.at(sim.between(20, 200), self._resume, (node, node.incarnation))

    def _resume(self, message: tuple[Node, int]) -> None:
        node, incarnation = message
        if node.incarnation == incarnation and node.paused:
            self.sim.note(node.name, "RESUME")
            node.resume()

    def _pause_leader(self) -> None:
        self._pause(self._leader())

    def _archive_loss(self) -> None:
        sim = self.sim
        node = self._pick([n for n in sim.nodes if not n.removed])
        if node is None or not self._loss_allowed():
            return
        self.next_archive += 1
        sim.note(node.name, "ARCHIVE LOST")
        if node.alive:
            node.crash()
        node.lose_archive(f"{node.name}.{self.next_archive}")
        self.open.append((node, len(sim.cp.configs) - 1, sim.cp.term))
        sim.at(sim.between(1, 60), self._restart, (node, node.down_token))

    def _redis_loss(self) -> None:
        self.sim.note("redis", "LOST")
        self.sim.redis.lose()

    def _clock_step(self) -> None:
        sim = self.sim
        node = self._pick(self._running())
        if node is not None:
            step = sim.rng.choice((-1, 1)) * sim.between(10, 80)
            node.clock_offset += step
            sim.note(node.name, "CLOCK STEP", step)

    def _slow(self) -> None:
        sim = self.sim
        node = self._pick(self._running())
        if node is not None:
            node.slow_until = sim.now + sim.between(30, 200)
            sim.note(node.name, "SLOW until", node.slow_until)

    def _partition(self, node: Node | None = None) -> None:
        """Cut a node off from the control plane (not from Redis or its peers)."""
        sim = self.sim
        node = node or self._pick(self._running())
        if node is not None:
            node.cut_until = sim.now + sim.between(40, 250)
            sim.note(node.name, "CUT OFF until", node.cut_until)

    def _partition_leader(self) -> None:
        self._partition(self._leader())

    def _network(self) -> None:
        sim = self.sim
        sim.storm_until = sim.now + sim.between(20, 150)
        sim.note("net", "STORM until", sim.storm_until)

    def _cp_outage(self) -> None:
        """The control plane's PostgreSQL restarts: nothing committed is lost, but for a while
        no heartbeat is answered and no supervisor or switchover step goes through."""
        sim = self.sim
        sim.cp.down_until = sim.now + sim.between(20, 120)
        sim.note("cp", "DOWN until", sim.cp.down_until)

    def _supervisor_crash(self) -> None:
        sim = self.sim
        running = [s for s in sim.supervisors if s.alive]
        if not running:
            return
        supervisor = sim.rng.choice(running)
        supervisor.crash()
        sim.note(supervisor.name, "CRASH")
        sim.at(sim.between(10, 120), self._restart_supervisor, (supervisor, supervisor.down_token))

    def _restart_supervisor(self, message: tuple[Supervisor, int]) -> None:
        supervisor, token = message
        if token == supervisor.down_token and not supervisor.alive:
            supervisor.start()

    def _switchover(self) -> None:
        sim = self.sim
        cp = sim.cp
        target = self._pick([sim.nodes[m] for m in cp.followers() if sim.nodes[m].alive])
        if target is not None:
            sim.start_switchover(target.idx)

    def _write_quorum(self) -> None:
        sim = self.sim
        followers = len(sim.cp.members) - 1
        if followers >= 1:
            sim.cp.set_write_quorum(sim.between(1, followers))

    def _remove(self) -> None:
        sim = self.sim
        cp = sim.cp
        node = self._pick([sim.nodes[m] for m in cp.followers()])
        if node is None or not self._loss_allowed() or not cp.remove(node.idx):
            return
        node.crash()
        node.removed = True
        self.open.append((node, len(cp.configs) - 1, cp.term))

    def _add(self) -> None:
        sim = self.sim
        if len(sim.nodes) < sim.max_nodes:
            sim.add_node()

    # -- the archive budget -----------------------------------------------------------------

    def _loss_allowed(self) -> bool:
        self.open = [event for event in self.open if not self._closed(event)]
        return not self.open

    def _closed(self, event: tuple[Node, int, int]) -> bool:
        sim = self.sim
        cp = sim.cp
        node, config, term = event
        if any(cp.records[m].resyncing for m in cp.members):
            return False
        if not node.removed and cp.records[node.idx].archive_id != node.archive_id:
            return False  # the control plane has not even seen the new archive yet
        # Until the election window has moved past it, an election still counts the node.
        window = sim.rules.quorum_window
        if window == "settle" and node.idx in cp.removed_in_term:
            return False
        if window == "commit" and cp.window_start <= config:
            return False
        if node.removed and sim.rules.quorum_window == "term" and (cp.term <= term or cp.leader is None):
            return False
        committed = sim.checker.committed
        size = len(committed)
        holders = sum(1 for m in cp.members if sim.nodes[m].log[:size] == committed)
        return holders >= min(cp.write_quorum + 1, len(cp.members))

