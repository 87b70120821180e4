"""A simulated node: archive (its log), heartbeats and lease, and the leader or follower role.

It makes the real node's decisions with the same pure modules (nodes.protocol): the fence
verdict before every publish, delivery and ack; CommitTracker for the commit position;
Lease before taking commands; needs_rejoin / truncate_after before following. What the real
node spreads over threads happens here in one cycle, so a crash or pause falls between
cycles; archiving and publishing are separate cycles so a crash can fall between them.

Events reach a node tagged with its incarnation: a restart forgets everything but the
archive, and whatever was addressed to the process that died is dropped. A paused node
(SIGSTOP) holds its events and runs them when it resumes, with the beliefs it had.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nodes.protocol.commit import CommitTracker
from nodes.protocol.fencing import FenceVerdict, check
from nodes.protocol.lease import Lease
from nodes.protocol.rejoin import TermRanges, needs_rejoin, truncate_after

if TYPE_CHECKING:
    from tests.simulation.redis_model import Entry
    from tests.simulation.simulator import Simulation

OK = FenceVerdict.OK
DEPOSED = FenceVerdict.DEPOSED
COMMAND_BATCH = 3  # commands a leader cycle takes
READ_BATCH = 4  # stream entries a follower cycle takes
CATCH_UP_BATCH = 8  # entries a catch-up answer carries


class View:
    """A heartbeat answer: the node's role and the cluster's configuration."""

    __slots__ = ("followers", "leader", "leader_position", "pause_for", "term", "version", "write_quorum")

    def __init__(
        self,
        term: int,
        leader: int | None,
        leader_position: int,
        write_quorum: int,
        followers: tuple[str, ...],
        version: int,
        pause_for: int,
    ) -> None:
        self.term = term
        self.leader = leader
        self.leader_position = leader_position  # the leader's last reported archived position
        self.write_quorum = write_quorum
        self.followers = followers  # current member followers, for the commit rule
        self.version = version  # the configuration's index in the control plane's history
        self.pause_for = pause_for  # a switchover in flight: stop taking commands


class Report:
    """A heartbeat report, built when sent: the fence read first, then the archive."""

    __slots__ = (
        "archive_id",
        "confirmed",
        "fence_seen",
        "incarnation",
        "last_term",
        "leading",
        "live",
        "node",
        "paused_for",
        "position",
        "seq",
        "settled_quorum",
        "truncated_to",
        "truncations",
    )

    def __init__(self, node: Node, fence_seen: int, live: bool) -> None:
        self.node = node.idx
        self.incarnation = node.incarnation
        self.seq = node.hb_seq
        self.fence_seen = fence_seen
        self.position = len(node.log)
        self.last_term = node.log[-1][0] if node.log else 0
        self.archive_id = node.archive_id
        self.truncated_to = node.truncated_to  # a rejoin cut the log back to this (None: no)
        self.truncations = node.truncations  # rejoin truncations of this archive, ever
        self.live = live
        role = node.role
        leads = role is not None and role.leads
        self.leading = role.term if leads else 0
        self.paused_for = node.view.pause_for if leads and node.view is not None else 0
        # The configuration under which this leader's commit last covered everything it
        # ever committed (-1: none yet): lets the control plane narrow its election window.
        self.confirmed = role.confirmed if leads else -1
        # The lowest W this leader has computed its commit position with since that position
        # first reached one of its own term (-1: not yet): settles the election window.
        self.settled_quorum = role.settled_quorum if leads else -1
        if self.settled_quorum >= 0 and node.sim.rules.settle_report == "held" and node.view is not None:
            self.settled_quorum = min(self.settled_quorum, node.view.write_quorum)


class LeaderRole:
    leads = True
    __slots__ = (
        "ack_cursor",
        "ack_epoch",
        "claim_epoch",
        "claimed",
        "confirmed",
        "max_commit",
        "pending",
        "settled_quorum",
        "term",
        "tracker",
        "unpublished",
    )

    def __init__(self, term: int, tail: int, followers: tuple[str, ...], pending: list[int], epoch: int) -> None:
        self.term = term
        self.tracker = CommitTracker(term=term, term_start=tail + 1, leader_position=tail)
        self.tracker.set_members(followers)
        self.unpublished = tail + 1  # first archived position not yet on the live stream
        self.pending: list[tuple[int, int, int, int, int]] = []  # (position, client, seq, result, command id)
        self.claimed = pending  # XAUTOCLAIM at start: commands an earlier leader read, never acknowledged
        self.claim_epoch = epoch
        self.ack_epoch = epoch
        self.ack_cursor = 0
        self.max_commit = 0
        self.confirmed = -1
        self.settled_quorum = -1


class FollowerRole:
    leads = False
    __slots__ = ("asked_at", "idle_since", "leader", "rejoined", "term")

    def __init__(self, term: int, leader: int) -> None:
        self.term = term
        self.leader = leader
        self.rejoined = False
        self.asked_at = -(10**9)  # last rejoin or catch-up request
        self.idle_since = -(10**9)  # last ack sent


class Node:
    def __init__(self, sim: Simulation, idx: int, archive_id: str) -> None:
        self.sim = sim
        self.idx = idx
        self.name = f"n{idx}"
        self.log: list[Entry] = []  # the archive: durable
        self.archive_id = archive_id
        self.executed: dict[tuple[int, int], int] = {}  # (client, seq) -> position: the engine's memory
        # Kept with the archive until a report that carried it is answered: the lowest
        # position a rejoin truncated the log to since then (None: no truncation).
        self.truncated_to: int | None = None
        self.truncations = 0  # rejoin truncations that dropped entries: kept in the archive
        self.alive = False
        self.paused = False
        self.removed = False
        self.incarnation = 0
        self.down_token = 0  # a scheduled restart is for one crash only
        self.clock_offset = 0  # this machine's clock minus the simulation's
        self.slow_until = 0  # its messages are slow until then
        self.cut_until = 0  # cut off from the control plane until then
        self.held: list[tuple[Callable[[Any], None], Any]] = []
        self._forget()

    def _forget(self) -> None:
        """A process starts with nothing but its archive."""
        self.view: View | None = None
        self.role: LeaderRole | FollowerRole | None = None
        self.ready_at = 0
        self.deposed_term = 0  # a term it stepped down from: never lead it again
        self.hb_seq = 0
        self.hb_outstanding = 0
        self.hb_sent_at = 0
        self.hb_sent_local = 0
        self.hb_truncated: int | None = None  # what the outstanding report said about truncation
        self.heartbeat_due = 0
        self.lease = Lease(self.sim.timing.lease)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        sim = self.sim
        self.alive = True
        self.paused = False
        self.incarnation += 1
        self._forget()
        self.ready_at = sim.now + sim.between(*sim.timing.replay)
        self.heartbeat_due = sim.now + sim.between(1, sim.timing.heartbeat // 2)
        sim.at(sim.between(1, sim.timing.node_cycle), self.on_cycle, self.incarnation)

    def crash(self) -> None:
        self.alive = False
        self.paused = False
        self.incarnation += 1
        self.down_token += 1
        self.held.clear()
        self._forget()

    def lose_archive(self, archive_id: str) -> None:
        self.log = []
        self.executed = {}
        self.truncated_to = None
        self.truncations = 0
        self.archive_id = archive_id

    def resume(self) -> None:
        self.paused = False
        held, self.held = self.held, []
        for fn, arg in held:
            self.sim.at(0, fn, arg)

    def _awake(self, fn: Callable[[Any], None], arg: Any, incarnation: int) -> bool:
        """Whether an event for `incarnation` runs now (a paused process holds it)."""
        if incarnation != self.incarnation or not self.alive:
            return False
        if self.paused:
            self.held.append((fn, arg))
            return False
        return True

    def local_now(self) -> int:
        return self.sim.now + self.clock_offset

    # -- the archive -----------------------------------------------------------------------

    def append(self, entry: Entry) -> None:
        position = len(self.log) + 1
        self.sim.checker.on_append(self, position, entry)
        if entry[3] == 0:
            self.executed[(entry[1], entry[2])] = position
        self.log.append(entry)

    def truncate(self, keep: int) -> None:
        for entry in self.log[keep:]:
            if entry[3] == 0:
                del self.executed[(entry[1], entry[2])]
        if keep < len(self.log):
            self.truncations += 1
        del self.log[keep:]
        self.truncated_to = keep if self.truncated_to is None else min(self.truncated_to, keep)

    def term_ranges(self) -> TermRanges:
        ranges: TermRanges = []
        for position, entry in enumerate(self.log, 1):
            if ranges and ranges[-1][0] == entry[0]:
                ranges[-1] = (entry[0], ranges[-1][1], position)
            else:
                ranges.append((entry[0], position, position))
        return ranges

    # -- heartbeats --------------------------------------------------------------------------

    def _heartbeat(self) -> None:
        """Report to the control plane. The real node has a thread for it; here it rides on
        the cycle, which only quantises when reports leave."""
        sim = self.sim
        timing = sim.timing
        self.heartbeat_due = sim.now + timing.heartbeat + sim.between(-3, 3)
        if self.hb_outstanding and sim.now - self.hb_sent_at < timing.heartbeat_timeout:
            return  # one request at a time, as the heartbeat thread does
        fence = sim.redis.fence  # read first: the report is measured after it
        live = sim.now >= self.ready_at or sim.rules.election == "position"
        self.hb_seq += 1
        self.hb_outstanding = self.hb_seq
        self.hb_sent_at = sim.now
        self.hb_sent_local = self.local_now()
        report = Report(self, fence or 0, live)
        self.hb_truncated = report.truncated_to
        sim.note(self.name, "report", report.position, report.last_term, report.fence_seen)
        sim.post(self, sim.cp.on_report, report)

    def on_answer(self, message: tuple[int, int, View]) -> None:
        incarnation, seq, view = message
        if not self._awake(self.on_answer, message, incarnation):
            return
        if seq != self.hb_outstanding:
            return  # the answer to a request already given up: its connection is gone
        self.hb_outstanding = 0
        self.lease.renewed(self.hb_sent_local)
        if self.hb_truncated is not None and self.truncated_to == self.hb_truncated:
            self.truncated_to = None  # the control plane has taken note of it
        if self.view is not None and view.term < self.view.term:
            return
        new_term = self.view is None or view.term != self.view.term
        self.view = view
        role = self.role
        if role is not None and role.leads:
            if view.term != role.term or view.leader != self.idx:
                self._step_down(f"term {view.term} has leader {view.leader}")
            else:
                role.tracker.set_members(view.followers)
        if new_term:
            self._heartbeat()  # report again at once: an election needs a report made after the fence moved

    # -- the role cycle ----------------------------------------------------------------------

    def on_cycle(self, incarnation: int) -> None:
        if not self._awake(self.on_cycle, incarnation, incarnation):
            return
        sim = self.sim
        sim.at(sim.timing.node_cycle - 3 + int(sim.random() * 7), self.on_cycle, incarnation)
        if sim.now >= self.heartbeat_due:
            self._heartbeat()
        view = self.view
        if sim.now < self.ready_at or view is None:
            return
        if view.leader is None:
            self.role = None  # no leader: wait for the election
            return
        role = self.role
        if view.leader == self.idx:
            if view.term <= self.deposed_term:
                return  # stepped down from it: wait for the next answer
            if not isinstance(role, LeaderRole) or role.term != view.term:
                role = self._start_leading(view)
            self._lead(role, view)
        else:
            if not isinstance(role, FollowerRole) or role.term != view.term or role.leader != view.leader:
                role = self.role = FollowerRole(view.term, view.leader)
            self._follow(role)

    # -- leader ----------------------------------------------------------------------------

    def _start_leading(self, view: View) -> LeaderRole:
        sim = self.sim
        redis = sim.redis
        sim.checker.on_leader_start(self, view.term)
        role = LeaderRole(view.term, len(self.log), view.followers, list(redis.pending), redis.epoch)
        self.role = role
        sim.note(self.name, "leads", view.term, len(self.log))
        return role

    def _step_down(self, why: str) -> None:
        role = self.role
        assert role is not None
        self.deposed_term = max(self.deposed_term, role.term)
        self.role = None
        self.sim.note(self.name, "steps down", role.term, why)

    def _lead(self, role: LeaderRole, view: View) -> None:
        sim = self.sim
        redis = sim.redis
        tracker = role.tracker
        if role.ack_epoch != redis.epoch:
            role.ack_epoch = redis.epoch
            role.ack_cursor = 0
        acks = redis.acks
        if role.ack_cursor < len(acks):
            identity = sim.rules.archive_identity
            for name, position, term, archive_id in acks[role.ack_cursor :]:
                tracker.record_ack(name, position, term, archive_id if identity else "")
            role.ack_cursor = len(acks)
        write_quorum = view.write_quorum
        commit = tracker.commit_position(write_quorum)
        if commit > 0 and (role.settled_quorum < 0 or write_quorum < role.settled_quorum):
            role.settled_quorum = write_quorum  # as nodes/committer.py: the lowest W a commit of its own used
        if commit > 0 and commit >= role.max_commit:
            role.max_commit = commit
            role.confirmed = view.version
        if role.pending and role.pending[0][0] <= commit and not self._deliver(role, commit):
            return
        if role.unpublished <= len(self.log):
            self._publish(role)
        elif view.pause_for == 0 and self.lease.valid(self.local_now()):
            self._take_commands(role)

    def _fence(self, role: LeaderRole, what: str, fenced: bool = True) -> bool:
        """May a write of this term go through now? Steps down when a newer term exists."""
        if not fenced:
            return True
        verdict = check(self.sim.redis.fence, role.term)
        if verdict is OK:
            return True
        if verdict is DEPOSED:
            self._step_down(f"{what} refused: fence {self.sim.redis.fence}")
        return False  # missing or behind: wait for the control plane to set it

    def _deliver(self, role: LeaderRole, commit: int) -> bool:
        """Report committed results to clients, in one fenced script with their XACKs."""
        sim = self.sim
        if not self._fence(role, "delivery", sim.rules.fenced_delivery):
            return self.role is role
        redis = sim.redis
        pending = role.pending
        count = 0
        results = []
        while count < len(pending) and pending[count][0] <= commit:
            _, client, seq, result, command_id = pending[count]
            redis.replies.setdefault(client, {})[seq] = result
            redis.pending.pop(command_id, None)
            sim.clients[client - 1].wake()
            results.append((client, seq, result))
            count += 1
        del pending[:count]
        sim.note(self.name, "delivers", role.term, commit, len(results))
        sim.checker.on_deliver(self, role.term, commit, results)
        return True

    def _publish(self, role: LeaderRole) -> None:
        if not self._fence(role, "publish"):
            return
        first = role.unpublished
        entries = self.log[first - 1 :]
        self.sim.redis.stream(role.term).publish(first, entries)
        role.unpublished = len(self.log) + 1
        self.sim.note(self.name, "publishes", role.term, first, len(self.log))

    def _take_commands(self, role: LeaderRole) -> None:
        redis = self.sim.redis
        if role.claim_epoch != redis.epoch:
            role.claimed = []
        batch: list[tuple[int, int, int]] = []
        while role.claimed and len(batch) < COMMAND_BATCH:
            command_id = role.claimed.pop(0)
            command = redis.pending.get(command_id)
            if command is not None:
                batch.append((command_id, command[0], command[1]))
        if len(batch) < COMMAND_BATCH:
            batch += redis.read_new(COMMAND_BATCH - len(batch))
        if not batch:
            return
        for command_id, client, seq in batch:
            position = len(self.log) + 1
            original = self.executed.get((client, seq))
            if original is None:  # executed now
                self.append((role.term, client, seq, 0))
                role.pending.append((position, client, seq, position, command_id))
            else:  # executed before: a duplicate event, answered with the original position
                self.append((role.term, client, seq, original))
                role.pending.append((position, client, seq, original, command_id))
        role.tracker.leader_position = len(self.log)
        self.sim.note(self.name, "archives", role.term, len(self.log) - len(batch) + 1, len(self.log))

    # -- answering followers (the peer service) ------------------------------------------

    def on_ranges_request(self, message: tuple[int, Node, int, int]) -> None:
        incarnation, follower, follower_incarnation, term = message
        if not self._awake(self.on_ranges_request, message, incarnation):
            return
        role = self.role
        if role is not None and role.leads and role.term == term:
            self.sim.post(self, follower.on_ranges_answer, (follower_incarnation, term, self.term_ranges()))

    def on_catch_up_request(self, message: tuple[int, Node, int, int, int]) -> None:
        """Replay from this leader's archive. Served only while it leads the follower's term:
        after a step-down its archive may no longer extend what the follower holds."""
        incarnation, follower, follower_incarnation, term, start = message
        if not self._awake(self.on_catch_up_request, message, incarnation):
            return
        role = self.role
        if role is not None and role.leads and role.term == term and start <= len(self.log):
            entries = self.log[start - 1 : start - 1 + CATCH_UP_BATCH]
            self.sim.post(self, follower.on_catch_up_answer, (follower_incarnation, term, start, entries))

    # -- follower ----------------------------------------------------------------------------

    def _follow(self, role: FollowerRole) -> None:
        sim = self.sim
        if not role.rejoined:
            self._rejoin(role)
            return
        log = self.log
        position = len(log)
        stream = sim.redis.streams.get(role.term)
        if stream is not None:
            positions, entries = stream.after(position, READ_BATCH)
        else:
            positions, entries = [], []
        if positions and positions[0] > position + 1:
            self._catch_up(role)  # trimmed, or written before this term's stream began
            return
        if not positions and self.view is not None and position < self.view.leader_position:
            # Nothing new on the stream, yet the leader holds more (inherited from earlier
            # terms, or published before Redis restarted): only its archive has it.
            self._catch_up(role)
            return
        taken = 0
        for at, entry in zip(positions, entries, strict=True):
            if at != position + taken + 1:
                break  # a hole after what we got: take that; the next read catches up
            if entry[0] < role.term:
                break  # an older term's entry on this term's stream: drop it and what follows
            self.append(entry)
            taken += 1
        if taken:
            sim.checker.on_follow(self, role.term, position + 1)
            sim.note(self.name, "archives", role.term, position + 1, len(log))
            self._ack(role)
        elif sim.now - role.idle_since >= sim.timing.idle_ack:
            self._ack(role)  # repeat it, so that a new leader learns where we are

    def _rejoin(self, role: FollowerRole) -> None:
        log = self.log
        tail_term = log[-1][0] if log else 0
        if not needs_rejoin(len(log), tail_term, role.term):
            self._rejoined(role)
            return
        sim = self.sim
        if sim.now - role.asked_at >= sim.timing.retry:
            role.asked_at = sim.now
            leader = sim.nodes[role.leader]
            sim.post(self, leader.on_ranges_request, (leader.incarnation, self, self.incarnation, role.term))

    def _rejoined(self, role: FollowerRole) -> None:
        role.rejoined = True
        self.sim.checker.on_follow(self, role.term, 1)

    def on_ranges_answer(self, message: tuple[int, int, TermRanges]) -> None:
        incarnation, term, theirs = message
        if not self._awake(self.on_ranges_answer, message, incarnation):
            return
        role = self.role
        if role is None or role.leads or role.term != term or role.rejoined:
            return
        cut = truncate_after(self.term_ranges(), theirs)
        if cut is not None:
            self.sim.note(self.name, "truncates", term, cut, len(self.log))
            self.truncate(cut)
        self._rejoined(role)

    def _catch_up(self, role: FollowerRole) -> None:
        sim = self.sim
        if sim.now - role.asked_at < sim.timing.retry:
            return
        role.asked_at = sim.now
        leader = sim.nodes[role.leader]
        start = len(self.log) + 1
        sim.post(self, leader.on_catch_up_request, (leader.incarnation, self, self.incarnation, role.term, start))

    def on_catch_up_answer(self, message: tuple[int, int, int, list[Entry]]) -> None:
        incarnation, term, start, entries = message
        if not self._awake(self.on_catch_up_answer, message, incarnation):
            return
        role = self.role
        if role is None or role.leads or role.term != term or not role.rejoined or start != len(self.log) + 1:
            return  # another role by now, or the answer to a request already served
        for entry in entries:
            self.append(entry)
        role.asked_at = -(10**9)  # ask for the next range at once if still behind
        self.sim.checker.on_follow(self, term, start)
        self.sim.note(self.name, "catches up", term, start, len(self.log))
        self._ack(role)

    def _ack(self, role: FollowerRole) -> None:
        """Send {node, archived position, term, archive id} to the fenced ack script. What it
        claims is judged now, while the log is the one acknowledged; it matters only if the
        script lets it through."""
        sim = self.sim
        role.idle_since = sim.now
        position = len(self.log)
        wrong = sim.checker.ack_claim(self, role.term, position)
        sim.post(self, sim.on_ack_arrives, (self, role.term, position, self.archive_id, wrong))
