"""The simulated control plane: its database (the source of truth), the heartbeat endpoint, the
supervisor and the switchover service.

Every method of ControlPlane is one database transaction. The supervisor and the
switchover driver read first and write later, as a compare-and-set on what they read, so
two supervisors, a supervisor and a switchover, or a crash between the database commit
and raising the fence all happen as they would in the real control plane.

Election window. An election must hear from every quorum that may hold a commit the new
leader needs. The brief (and DESIGN §4) take one: the followers of the term that ended
(removed ones included) with the lowest W of that term (`Rules.quorum_window == "term"`).
That is not enough when that term's leader committed nothing of its own: the commits of
earlier terms are then held only by the quorums of *their* configurations, so after a
follower was removed or W raised, the next election may hear only from followers that
never held them (found by this simulator; see test_legacy_rules.py).

By default ("settle") the window is the control plane's (controlplane/clusters/services.py):
the cluster keeps `term_write_quorum`, the lowest W in force since the window began
(set_write_quorum lowers it, nothing else), and for each removed node `removed_in_term`,
the term it was removed in (non-null: still a follower of the window). Installing a leader
changes neither. The window settles only when the current leader of term E reports, in a
heartbeat of term E, `settled_quorum` >= 0: the lowest W it computed its commit position
with since that position first reached a position of its own term. On the first such
report of term E the control plane sets settled_term = E, term_write_quorum =
min(settled_quorum, current W), and clears removed_in_term of the nodes removed before
term E (nodes removed during E still count until the next settle). An election takes as
followers every non-removed node but the last leader, plus the removed nodes still
counted, with W = min(term_write_quorum, current W), and the last leader as old leader
(`_settle_quorum`, `_settle`).

"commit" (this simulator's first fix) keeps the history of configurations (W, followers,
leader) and an election takes every configuration since the one under which the leader
last confirmed a commit covering everything it had committed (its heartbeats say which:
Report.confirmed). Each configuration's quorum must be heard, or vouched for by its
leader or any later one (`_quorums`).

Report order. By default ("boot") a report whose boot id is the one on file and whose
sequence number is at or below the one on file is ignored: not stored, but answered (the
heartbeat endpoint returns the node's row as it is). Any other report is stored, also a
late one from an earlier boot of the node: boot ids are random, so they say nothing about
which process came first. "start" (this simulator's first fix) orders (process start,
sequence) and drops an older report unanswered; "arrival" stores whatever arrives.

Switchover. The leader's report echoes the switchover it paused for, and the target must
hold the leader's (last term, position), not just its position: a report from an earlier,
abandoned pause, or a target with a longer stale tail of an older term, must not count.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from nodes.protocol.election import Decision, Election, Report, decide
from nodes.protocol.fencing import restore_to
from nodes.protocol.identity import LEADER_REPORTS_FOR_TARGET, Claim, OnFile, judge
from tests.simulation.node import View

if TYPE_CHECKING:
    from tests.simulation.node import Node
    from tests.simulation.node import Report as HeartbeatReport
    from tests.simulation.simulator import Simulation


Config = tuple[int, tuple[int, ...], int | None]  # (W, followers, leader)


class NodeRecord:
    """A node's row: its latest report as judged, and when the database received it."""

    __slots__ = (
        "archive_id",
        "fence_seen",
        "last_sent",
        "last_term",
        "leader_reports",
        "leading",
        "live",
        "paused_for",
        "position",
        "received_at",
        "reported",
        "resync_target",
        "resyncing",
        "truncations",
    )

    def __init__(self, received_at: int) -> None:
        self.archive_id = ""
        self.position = 0
        self.last_term = 0
        self.fence_seen = 0
        self.live = False
        self.received_at = received_at
        self.reported = False
        self.resyncing = False
        self.resync_target: int | None = None
        self.leader_reports = 0  # leader reports received since this node's reset was seen
        self.paused_for = 0
        self.leading = 0
        self.last_sent = (0, 0)  # (boot id / process start, sequence number) of the report on file
        self.truncations = 0  # rejoin truncations of its archive, as last reported


class Switchover:
    __slots__ = ("deadline", "id", "leader", "target", "term")

    def __init__(self, sid: int, leader: int, target: int, term: int, deadline: int) -> None:
        self.id = sid
        self.leader = leader
        self.target = target
        self.term = term
        self.deadline = deadline


class ControlPlane:
    def __init__(self, sim: Simulation, nodes: int, write_quorum: int) -> None:
        self.sim = sim
        self.term = 1
        self.leader: int | None = 0
        self.last_leader: int | None = None
        self.write_quorum = write_quorum
        self.members = list(range(nodes))  # nodes in the cluster, leader included, removed ones not
        self.records = [NodeRecord(0) for _ in range(nodes)]
        self.configs: list[Config] = []  # one per change of W, followers or leader
        self.follower_names: tuple[str, ...] = ()
        self.term_config = 0  # the configuration the current term began with
        self.window_start = 0  # "commit" window: oldest configuration an election must respect
        self.election_window = (0, 0)  # "term" window of the term that ended
        # "settle" window (the control plane's columns): the lowest W in force since the
        # window began, the term of its last settle, and for each removed node still counted
        # by elections the term in which it was removed (Node.removed_in_term).
        self.term_write_quorum = write_quorum
        self.settled_term = 0
        self.removed_in_term: dict[int, int] = {}
        self.switchover: Switchover | None = None
        self.next_switchover = 1
        self.refused = 0
        self.down_until = 0  # the database is restarting until then
        self._configure()
        sim.checker.on_leader(1, 0, "is the first leader")

    # -- configuration history -------------------------------------------------------------

    def _configure(self) -> None:
        followers = tuple(m for m in self.members if m != self.leader)
        self.follower_names = tuple(f"n{m}" for m in followers)
        # Without a leader nothing can be acknowledged: such a configuration has no followers.
        self.configs.append((self.write_quorum, followers if self.leader is not None else (), self.leader))

    def followers(self) -> list[int]:
        return [m for m in self.members if m != self.leader]

    def window(self) -> tuple[int, int]:
        if self.sim.rules.quorum_window == "term":
            return self.election_window
        return (self.window_start, len(self.configs) - 1)

    # -- heartbeats ---------------------------------------------------------------------------

    def on_report(self, report: HeartbeatReport) -> None:
        """services.record_heartbeat: judge the report, store it, answer with the node's role."""
        sim = self.sim
        node = sim.nodes[report.node]
        if node.removed or node.cut_until > sim.now or self.down_until > sim.now:
            return  # never arrives, or is refused: a removed node must not run
        record = self.records[report.node]
        order = sim.rules.report_order
        if order == "boot":
            if report.incarnation == record.last_sent[0] and report.seq <= record.last_sent[1]:
                # Stale news from this process (delayed, or a duplicate): not stored, answered.
                self._answer(node, report)
                return
        elif order == "start":
            sent = (report.incarnation, report.seq)
            if sent <= record.last_sent:
                return  # older than the report on file (delayed, or a duplicate): its answer is moot too
            record.last_sent = sent
        reset = self._judge(record, report) if sim.rules.archive_identity else False
        if reset is None:
            return
        self._store(record, report)
        if report.node == self.leader:
            if reset:
                self.end_term(f"leader {node.name}'s archive was reset")
                sim.redis.set_fence(self.term)  # database first, then the fence
            elif report.leading == self.term:
                self._leader_reported(report)
        self._answer(node, report)

    def _answer(self, node: Node, report: HeartbeatReport) -> None:
        """The heartbeat endpoint's answer: restore the fence if Redis lost it, send the role."""
        self.restore_fence()
        sim = self.sim
        if node.cut_until <= sim.now:
            sim.post(node, node.on_answer, (report.incarnation, report.seq, self.view_for(report.node)))

    def _judge(self, record: NodeRecord, report: HeartbeatReport) -> bool | None:
        """identity.judge on the report: True if it starts a resync, None if refused."""
        sim = self.sim
        on_file = record.position
        truncation = sim.rules.truncation
        if truncation == "report" and report.truncated_to is not None and report.archive_id == record.archive_id:
            on_file = min(on_file, report.truncated_to)  # a rejoin cut an uncommitted tail: not a reset
        # "count": judge takes a position that went back with more truncations as a rejoin.
        counted = truncation == "count"
        verdict = judge(
            OnFile(record.archive_id, on_file, record.resyncing, record.resync_target, record.truncations if counted else 0),
            Claim(report.archive_id, report.position, report.last_term, report.fence_seen, report.truncations if counted else 0),
            self.term,
        )
        if verdict.refuse:
            self.refused += 1
            sim.note("cp", "refuses", f"n{report.node}", verdict.refuse)
            return None
        if verdict.reset:
            record.leader_reports = 0
            sim.note("cp", "resync", f"n{report.node}", verdict.reason)
        record.resyncing = verdict.resyncing
        if verdict.reset or not verdict.resyncing:
            record.resync_target = None
        return verdict.reset

    def _store(self, record: NodeRecord, report: HeartbeatReport) -> None:
        record.archive_id = report.archive_id
        record.position = report.position
        record.last_term = report.last_term
        record.fence_seen = report.fence_seen
        record.live = report.live
        record.received_at = self.sim.now
        record.reported = True
        record.paused_for = report.paused_for
        record.leading = report.leading
        record.truncations = report.truncations
        if self.sim.rules.report_order == "boot":
            record.last_sent = (report.incarnation, report.seq)

    def _leader_reported(self, report: HeartbeatReport) -> None:
        """Resync targets from the leader's reports, and the election window's start."""
        for record in self.records:
            if record.resyncing and record.resync_target is None:
                record.leader_reports += 1
                if record.leader_reports >= LEADER_REPORTS_FOR_TARGET:
                    record.resync_target = report.position
        if report.confirmed > self.window_start:
            self.window_start = report.confirmed
        if self.sim.rules.quorum_window == "settle" and report.settled_quorum >= 0 and self.settled_term < self.term:
            self._settle(report.settled_quorum)

    def _settle(self, used_quorum: int) -> None:
        """services._settle: the leader of this term committed a position of its own with at
        least `used_quorum` (the lowest W it used since) of its followers; every earlier
        commit is held by those, so the "settle" window starts here. Nodes removed during
        this term still count until the next settle."""
        self.settled_term = self.term
        self.term_write_quorum = min(used_quorum, self.write_quorum)
        for m in [m for m, term in self.removed_in_term.items() if term < self.term]:
            del self.removed_in_term[m]
        self.sim.note("cp", "settles", self.term, self.term_write_quorum)

    def view_for(self, node: int) -> View:
        switchover = self.switchover
        pause = 0
        if (
            switchover is not None
            and node == self.leader
            and switchover.term == self.term
            and self.sim.now <= switchover.deadline
        ):
            pause = switchover.id
        leader_position = self.records[self.leader].position if self.leader is not None else 0
        return View(
            self.term, self.leader, leader_position, self.write_quorum, self.follower_names, len(self.configs) - 1, pause
        )

    def restore_fence(self) -> None:
        value = restore_to(self.term, self.sim.redis.fence)
        if value is not None:
            self.sim.redis.set_fence(value)
            self.sim.note("cp", "restores fence", value)

    def is_live(self, node: int) -> bool:
        record = self.records[node]
        return record.live and record.reported and self.sim.now - record.received_at <= self.sim.timing.failover

    # -- terms ----------------------------------------------------------------------------------

    def end_term(self, reason: str) -> None:
        """Commit term + 1 with no leader; the caller raises the fence after."""
        if self.sim.rules.quorum_window == "term":
            self.election_window = (self.term_config, len(self.configs) - 1)
        if self.leader is not None:
            self.last_leader = self.leader
        self.term += 1
        self.leader = None
        self._configure()
        self.term_config = len(self.configs) - 1
        self.sim.note("cp", "ends term", self.term - 1, reason)

    def assign(self, winner: int, why: str) -> None:
        """Make the election's winner the leader of the current (fenced) term."""
        self.leader = winner
        self._configure()
        self.sim.checker.on_leader(self.term, winner, "is elected")
        self.sim.note("cp", "elects", self.term, f"n{winner}", why)

    def choose(self) -> tuple[int | None, str]:
        """The election of the current leaderless term: a winner, or why not yet."""
        if self.sim.rules.election == "position":
            return self._choose_by_position()
        reports = self._reports()
        quorums = self._settle_quorum() if self.sim.rules.quorum_window == "settle" else self._quorums()
        if not quorums:  # nothing was ever led: nothing can have been committed
            quorums = [(Election(self.term, tuple(r.name for r in reports), 1, None), (None,))]
        if not self.sim.rules.report_freshness:
            # The old rule: one report is enough (W = 0 asks for one), whenever it was built.
            election, vouchers = quorums[0]
            quorums = [(Election(self.term, election.followers, 0, election.old_leader), vouchers)]
        decision = None
        for election, vouchers in quorums:
            decision = self._decide(election, vouchers, reports)
            if decision.winner is None:
                return None, decision.reason
        assert decision is not None
        assert decision.winner is not None
        return int(decision.winner[1:]), decision.reason

    @staticmethod
    def _decide(election: Election, vouchers: tuple[str | None, ...], reports: list[Report]) -> Decision:
        """election.decide with each possible old leader in turn: the first that elects."""
        first = None
        for voucher in vouchers:
            decision = decide(replace(election, old_leader=voucher), reports)
            if decision.winner is not None:
                return decision
            first = first or decision
        assert first is not None
        return first

    def _settle_quorum(self) -> list[tuple[Election, tuple[str | None, ...]]]:
        """services.election_of: the followers are every member but the last leader, and the
        removed nodes still counted (removed_in_term); W is the lowest since the last settle;
        the old leader is the last leader."""
        last = self.last_leader
        followers = [m for m in self.members if m != last]
        followers += [m for m in sorted(self.removed_in_term) if m != last]
        old = f"n{last}" if last is not None else None
        election = Election(
            self.term, tuple(f"n{m}" for m in followers), min(self.term_write_quorum, self.write_quorum), old
        )
        return [(election, (old,))]

    def _quorums(self) -> list[tuple[Election, tuple[str | None, ...]]]:
        """The quorums the election must satisfy, each an election.Election with the leaders
        whose fresh report would vouch for it instead (as its old leader).

        "term" (as specified): one, over the followers of the term that ended (removed ones
        included) with the lowest W in force since it began, vouched for by its leader.
        "commit": one per configuration in the window. Its commits were acknowledged by W of
        its followers and are held by its leader and by every leader elected after it, so a
        fresh report from any of those is enough for it. Never stricter than one election
        over the union with the lowest W, and it does not wait for a node that has lost its
        archive (or truncated) when a later leader can vouch for the older commits.
        """
        first, last = self.window()
        configs = self.configs[first : last + 1]
        if self.sim.rules.quorum_window == "term":
            followers = sorted({m for _, members, _ in configs for m in members})
            if not followers:
                return []
            lowest = min(w for w, _, _ in configs)  # the lowest W in force since the term began
            old = f"n{self.last_leader}" if self.last_leader is not None else None
            return [(Election(self.term, tuple(f"n{m}" for m in followers), lowest, old), (old,))]
        led = [c for c in configs if c[2] is not None]
        quorums = []
        seen: set[Config] = set()
        vouchers: tuple[str, ...] = ()
        for config in reversed(led):  # latest first: its leader vouches for every earlier one too
            write_quorum, members, leader = config
            vouchers = tuple(dict.fromkeys((*vouchers, f"n{leader}")))
            if config in seen:
                continue  # checked already, with fewer vouchers: this one passes if that did
            seen.add(config)
            quorums.append((Election(self.term, tuple(f"n{m}" for m in members), write_quorum, vouchers[0]), vouchers))
        return quorums

    def _reports(self) -> list[Report]:
        """The nodes' latest reports as the election reads them (not removed nodes')."""
        freshness = self.sim.rules.report_freshness
        identity = self.sim.rules.archive_identity
        reports = []
        for m in self.members:
            record = self.records[m]
            if not record.reported:
                continue
            reports.append(
                Report(
                    name=f"n{m}",
                    fence_seen=record.fence_seen if freshness else self.term,
                    last_term=record.last_term,
                    position=record.position,
                    live=self.is_live(m),
                    voter=not identity or (bool(record.archive_id) and not record.resyncing),
                )
            )
        return reports

    def _choose_by_position(self) -> tuple[int | None, str]:
        """The old supervisor: the live follower with the highest archived position among
        those heard since the leader's last heartbeat."""
        old = self.last_leader
        silent_since = self.records[old].received_at if old is not None else None
        best: tuple[int, int] | None = None
        for m in self.members:
            record = self.records[m]
            if m == old or not self.is_live(m) or (self.sim.rules.archive_identity and record.resyncing):
                continue
            if silent_since is not None and record.received_at <= silent_since:
                continue
            key = (record.position, -m)
            if best is None or key > best:
                best = key
        if best is None:
            return None, "no eligible follower"
        return -best[1], f"highest archived position ({best[0]})"

    def electable(self, node: int) -> bool:
        """services.assign_leader's own checks: a member, not a new empty replica."""
        return node in self.members and not (self.sim.rules.archive_identity and self.records[node].resyncing)

    # -- operator actions ---------------------------------------------------------------------

    def set_write_quorum(self, write_quorum: int) -> bool:
        if not 1 <= write_quorum <= len(self.members) - 1 or write_quorum == self.write_quorum:
            return False
        self.write_quorum = write_quorum
        self.term_write_quorum = min(self.term_write_quorum, write_quorum)
        self._configure()
        self.sim.note("cp", "write quorum", write_quorum)
        return True

    def remove(self, node: int) -> bool:
        """Drain and remove a follower; W may not exceed the followers left."""
        if node == self.leader or node not in self.members or len(self.members) - 2 < max(self.write_quorum, 1):
            return False
        self.members.remove(node)
        self.removed_in_term[node] = self.term
        self._configure()
        self.sim.note("cp", "removes", f"n{node}")
        return True

    def add(self, node: int) -> None:
        self.members.append(node)
        self.records.append(NodeRecord(self.sim.now))
        self._configure()
        self.sim.note("cp", "adds", f"n{node}")

    def start_switchover(self, target: int) -> Switchover | None:
        """switchover.change_leader's first transaction: the leader pauses; refused while
        another is in flight or when the target cannot lead."""
        now = self.sim.now
        current = self.switchover
        if self.leader is None or target == self.leader or target not in self.members:
            return None
        if current is not None and current.term == self.term and now <= current.deadline:
            return None
        if not self.is_live(target) or not self.electable(target):
            return None
        sid = self.next_switchover
        self.next_switchover += 1
        self.switchover = Switchover(sid, self.leader, target, self.term, now + self.sim.timing.switchover_timeout)
        self.sim.note("cp", "switchover", sid, f"n{self.leader}->n{target}")
        return self.switchover

    def switch(self, switchover: Switchover) -> bool:
        """The switchover's compare-and-set: term + 1 with the target as leader, or refused."""
        if (
            self.switchover is not switchover
            or self.sim.now > switchover.deadline
            or self.term != switchover.term
            or self.leader != switchover.leader
            or not self.electable(switchover.target)
        ):
            return False
        self.last_leader = self.leader
        self.term += 1
        self.leader = switchover.target
        self.switchover = None
        self._configure()
        self.term_config = len(self.configs) - 1
        self.sim.checker.on_leader(self.term, switchover.target, "takes over by switchover")
        self.sim.note("cp", "switches", self.term, f"n{switchover.target}")
        return True

    def clear_switchover(self, switchover: Switchover, why: str) -> None:
        if self.switchover is switchover:
            self.switchover = None
            self.sim.note("cp", "switchover over", switchover.id, why)


class Supervisor:
    """controlplane.clusters.supervisor.run_cycle: end a silent leader's term, then elect."""

    def __init__(self, sim: Simulation, number: int) -> None:
        self.sim = sim
        self.name = f"sup{number}"
        self.alive = False
        self.incarnation = 0
        self.busy = False  # a compare-and-set of this cycle is on its way
        self.down_token = 0

    def start(self) -> None:
        self.alive = True
        self.incarnation += 1
        self.busy = False
        self.sim.at(self.sim.between(1, self.sim.timing.supervisor), self.on_cycle, self.incarnation)

    def crash(self) -> None:
        self.alive = False
        self.incarnation += 1
        self.down_token += 1

    def on_cycle(self, incarnation: int) -> None:
        if incarnation != self.incarnation:
            return
        sim = self.sim
        sim.at(sim.timing.supervisor + sim.between(-4, 4), self.on_cycle, incarnation)
        cp = sim.cp
        if self.busy or cp.down_until > sim.now:
            return
        cp.restore_fence()
        step = sim.between(1, sim.timing.supervisor_step)
        if cp.leader is not None:
            if sim.now - cp.records[cp.leader].received_at > sim.timing.failover:
                self.busy = True
                sim.at(step, self.on_end_term, (incarnation, cp.term, cp.leader))
            return
        winner, why = cp.choose()
        if winner is None:
            sim.note(self.name, "waits", cp.term, why)
            return
        self.busy = True
        sim.at(step, self.on_assign, (incarnation, cp.term, winner, why))

    def on_end_term(self, message: tuple[int, int, int]) -> None:
        incarnation, term, leader = message
        if incarnation != self.incarnation:
            return
        self.busy = False
        sim = self.sim
        cp = sim.cp
        if cp.down_until > sim.now:
            return  # the transaction failed: the next cycle reads again
        if cp.term != term or cp.leader != leader:
            sim.note(self.name, "lost the race", term)
            return
        cp.end_term(f"leader n{leader} silent for {sim.now - cp.records[leader].received_at} ticks")
        if sim.faults.supervisor_dies_before_fence():
            return  # the next cycle (ours or another's) restores the fence from the database
        sim.at(sim.between(1, sim.timing.supervisor_step), self.on_raise_fence, (incarnation, cp.term))

    def on_raise_fence(self, message: tuple[int, int]) -> None:
        incarnation, term = message
        if incarnation == self.incarnation:
            self.sim.redis.set_fence(term)
            self.sim.note(self.name, "raises fence", term)

    def on_assign(self, message: tuple[int, int, int, str]) -> None:
        incarnation, term, winner, why = message
        if incarnation != self.incarnation:
            return
        self.busy = False
        cp = self.sim.cp
        if cp.down_until > self.sim.now:
            return  # the transaction failed: the next cycle reads again
        if cp.term != term or cp.leader is not None or not cp.electable(winner):
            self.sim.note(self.name, "lost the race", term)
            return
        cp.assign(winner, why)


class SwitchoverDriver:
    """switchover.change_leader after its first transaction: wait until the paused leader
    reported its final position and the target holds it, then swap in one compare-and-set."""

    def __init__(self, sim: Simulation, switchover: Switchover) -> None:
        self.sim = sim
        self.switchover = switchover
        sim.at(sim.between(1, 10), self.on_cycle, None)

    def on_cycle(self, _: None) -> None:
        sim = self.sim
        cp = sim.cp
        switchover = self.switchover
        if cp.switchover is not switchover:
            return
        if cp.down_until > sim.now:
            sim.at(10, self.on_cycle, None)
            return
        if sim.now > switchover.deadline or cp.term != switchover.term or cp.leader != switchover.leader:
            cp.clear_switchover(switchover, "abandoned")
            return
        if self._caught_up():
            sim.at(sim.between(1, sim.timing.supervisor_step), self.on_switch, None)
        else:
            sim.at(10, self.on_cycle, None)

    def _caught_up(self) -> bool:
        cp = self.sim.cp
        switchover = self.switchover
        leader = cp.records[switchover.leader]
        target = cp.records[switchover.target]
        # The leader's report must say it paused for *this* switchover: a report from an
        # earlier pause may be older than commands it took since.
        return (
            leader.paused_for == switchover.id
            and leader.leading == switchover.term
            and target.received_at > leader.received_at
            and cp.is_live(switchover.target)
            and (target.last_term, target.position) >= (switchover.term, leader.position)
        )

    def on_switch(self, _: None) -> None:
        sim = self.sim
        cp = sim.cp
        if cp.down_until > sim.now:
            sim.at(10, self.on_cycle, None)  # the transaction failed: check again
            return
        if cp.switch(self.switchover):
            sim.at(sim.between(1, sim.timing.supervisor_step), self.on_raise_fence, cp.term)
        else:
            cp.clear_switchover(self.switchover, "refused")

    def on_raise_fence(self, term: int) -> None:
        self.sim.redis.set_fence(term)
        self.sim.note("switchover", "raises fence", term)
