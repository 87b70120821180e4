"""The invariants, named after the DESIGN §4 rules they check, and the checker that holds them.

The checker is told about every state change that could break one (an append, a truncation,
a leader starting, a delivery, an acknowledgement, an assignment) while the step that makes
it runs, so every invariant is checked after every step at the cost of what that step
changed. `check_all` recomputes the checkable ones from scratch (Options.paranoid), which
guards the incremental checks themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.simulation.node import FollowerRole

if TYPE_CHECKING:
    from tests.simulation.node import Node
    from tests.simulation.redis_model import Entry
    from tests.simulation.simulator import Simulation

# Safety invariants (DESIGN §4 rules in brackets).
COMMITTED_RESULTS_SURVIVE = "committed_results_survive"  # the promise; Election restriction + quorum, Fencing
ONE_LEADER_PER_TERM = "one_leader_per_term"  # One leader per term
LOGS_ARE_PREFIXES = "logs_are_prefixes_up_to_commit"  # Commit rule, Rejoin, Fencing, Archive identity
TERMS_NEVER_DECREASE = "terms_never_decrease"  # Fencing (every event carries its leader's term)
COMMANDS_EXECUTE_ONCE = "commands_execute_once"  # Idempotent commands
# Liveness, reported apart from safety.
CONVERGENCE = "convergence"  # Liveness is progress; "the cluster waits ... instead" must end once healed

SAFETY = (COMMITTED_RESULTS_SURVIVE, ONE_LEADER_PER_TERM, LOGS_ARE_PREFIXES, TERMS_NEVER_DECREASE, COMMANDS_EXECUTE_ONCE)


class Violation(Exception):
    """An invariant broken by a seed; carries what is needed to replay it."""

    def __init__(self, invariant: str, detail: str, seed: int, time: int, trace_tail: list[str]) -> None:
        super().__init__(f"{invariant}: {detail}")
        self.invariant = invariant
        self.detail = detail
        self.seed = seed
        self.time = time
        self.trace_tail = trace_tail

    @property
    def liveness(self) -> bool:
        return self.invariant == CONVERGENCE

    def report(self) -> str:
        lines = [f"seed {self.seed}: {self.invariant} broken at t={self.time}: {self.detail}", "last events:"]
        lines += [f"  {line}" for line in self.trace_tail]
        return "\n".join(lines)


class Checker:
    """Ground truth the nodes cannot see: what was reported committed, who led each term."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        # The committed log: the longest prefix any leader reported committed (a delivery
        # with commit position c reports positions 1..c of its log).
        self.committed: list[Entry] = []
        self.committed_by: list[int] = []  # the term of the leader that first reported each position
        self.answers: dict[tuple[int, int], int] = {}  # (client, seq) -> result position reported
        self.leaders: dict[int, int] = {}  # term -> node index (assigned or seen leading)
        self.written: dict[tuple[int, int], Entry] = {}  # (position, term) -> entry: one writer per term

    def fail(self, invariant: str, detail: str) -> None:
        raise self.sim.violation(invariant, detail)

    # -- one leader per term ---------------------------------------------------------

    def on_leader(self, term: int, node: int, how: str) -> None:
        known = self.leaders.setdefault(term, node)
        if known != node:
            self.fail(ONE_LEADER_PER_TERM, f"term {term}: n{node} {how}, but n{known} led it already")

    # -- appends, truncations: log matching, terms, commands ---------------------------

    def on_append(self, node: Node, position: int, entry: Entry) -> None:
        """Called by Node.append before the entry goes in (the log holds position - 1)."""
        log = node.log
        term = entry[0]
        if log and term < log[-1][0]:
            self.fail(TERMS_NEVER_DECREASE, f"{node.name} appends term {term} at {position} after term {log[-1][0]}")
        if term > self.sim.cp.term:
            self.fail(TERMS_NEVER_DECREASE, f"{node.name} holds term {term}, beyond the database's term {self.sim.cp.term}")
        key = (position, term)
        first = self.written.setdefault(key, entry)
        if first != entry:
            self.fail(
                LOGS_ARE_PREFIXES,
                f"{node.name} holds {_show(entry)} at position {position}, but term {term} wrote {_show(first)} there",
            )
        command = (entry[1], entry[2])
        original = entry[3]
        if original == 0:
            if command in node.executed:
                self.fail(
                    COMMANDS_EXECUTE_ONCE,
                    f"{node.name} executes c{entry[1]}#{entry[2]} at {position}, already executed at {node.executed[command]}",
                )
        elif node.executed.get(command) != original:
            self.fail(
                COMMANDS_EXECUTE_ONCE,
                f"{node.name} answers c{entry[1]}#{entry[2]} as a duplicate of position {original}, "
                f"which does not hold it in its log",
            )

    # -- leaders: what they must hold -----------------------------------------------------

    def on_leader_start(self, node: Node, term: int) -> None:
        """A leader starts (or restarts) leading `term`: it must hold every position reported
        committed by its own or an earlier term. (Later terms' results are not its business:
        it is a deposed leader that has not noticed yet, and the fence stops it.)"""
        self.on_leader(term, node.idx, "starts leading")
        size = self._reported_up_to(term)
        if node.log[:size] != self.committed[:size]:
            at = _first_difference(node.log, self.committed)
            self.fail(
                COMMITTED_RESULTS_SURVIVE,
                f"{node.name} starts leading term {term} without the committed log: position {at} "
                f"was reported committed as {_show(self.committed[at - 1])} (term {self.committed_by[at - 1]}), "
                f"{node.name} holds {_show(node.log[at - 1]) if at <= len(node.log) else 'nothing'}",
            )

    def _reported_up_to(self, term: int) -> int:
        """How many positions of the committed log were reported by `term` or earlier terms."""
        size = len(self.committed)
        by = self.committed_by
        while size and by[size - 1] > term:
            size -= 1
        return size

    def on_deliver(self, node: Node, term: int, commit: int, results: list[tuple[int, int, int]]) -> None:
        """A delivery went through: positions 1..commit of the leader's log are reported committed."""
        committed = self.committed
        known = min(len(committed), commit)
        log = node.log
        if log[:known] != committed[:known]:
            at = _first_difference(log[:known], committed[:known])
            self.fail(
                COMMITTED_RESULTS_SURVIVE,
                f"{node.name} (term {term}) reports position {at} committed as {_show(log[at - 1])}, "
                f"but {_show(committed[at - 1])} was reported committed there (term {self.committed_by[at - 1]})",
            )
        if commit > len(committed):
            committed.extend(log[len(committed) : commit])
            self.committed_by.extend([term] * (commit - len(self.committed_by)))
        for client, seq, position in results:
            first = self.answers.setdefault((client, seq), position)
            if first != position:
                self.fail(
                    COMMITTED_RESULTS_SURVIVE,
                    f"c{client}#{seq} answered at position {position} by {node.name} (term {term}), "
                    f"but it was answered at position {first} before",
                )
        # A leader of a later term already leading must hold it too: the result is final.
        for other in self.sim.acting_leaders():
            if other.role.term > term and other.log[:commit] != committed[:commit]:
                at = _first_difference(other.log, committed[:commit])
                self.fail(
                    COMMITTED_RESULTS_SURVIVE,
                    f"{node.name} (term {term}) reports position {at} committed, but {other.name}, "
                    f"leader of the later term {other.role.term}, does not hold it",
                )

    # -- followers: what they claim -------------------------------------------------------

    def ack_claim(self, node: Node, term: int, position: int) -> str:
        """What is wrong with an acknowledgement of leader `term`'s log up to `position`, sent
        now ("": nothing). It breaks the invariant only if the ack script lets it through."""
        leader = self.sim.acting_leader(term)
        if leader is None:
            return ""
        if position > len(leader.log) or node.log[:position] != leader.log[:position]:
            at = _first_difference(node.log[:position], leader.log[:position])
            return (
                f"{node.name} acknowledged position {position} in term {term}, but differed from the "
                f"leader {leader.name} at position {at}"
            )
        return ""

    def on_follow(self, node: Node, term: int, first: int) -> None:
        """A follower of `term` (past its rejoin) holds a prefix of that term's leader's log,
        from `first` on (1: all of it)."""
        leader = self.sim.acting_leader(term)
        if leader is None:
            return
        log = node.log
        if len(log) > len(leader.log) or log[first - 1 :] != leader.log[first - 1 : len(log)]:
            at = _first_difference(log, leader.log)
            self.fail(
                LOGS_ARE_PREFIXES,
                f"{node.name}, following term {term}, is not a prefix of the leader {leader.name}'s log "
                f"(first difference at position {at})",
            )

    # -- the end --------------------------------------------------------------------------

    def final(self, leader: Node) -> None:
        size = len(self.committed)
        if leader.log[:size] != self.committed:
            at = _first_difference(leader.log, self.committed)
            self.fail(
                COMMITTED_RESULTS_SURVIVE,
                f"the final log ({leader.name}) lost position {at}, reported committed as "
                f"{_show(self.committed[at - 1])} in term {self.committed_by[at - 1]}",
            )

    def check_all(self) -> None:
        """Everything checkable from the current state alone, from scratch."""
        sim = self.sim
        for node in sim.nodes:
            executed: set[tuple[int, int]] = set()
            last = 0
            for index, entry in enumerate(node.log):
                if entry[0] < last:
                    self.fail(TERMS_NEVER_DECREASE, f"{node.name}: term {entry[0]} at {index + 1} after term {last}")
                last = entry[0]
                if self.written.get((index + 1, entry[0]), entry) != entry:
                    self.fail(LOGS_ARE_PREFIXES, f"{node.name}: position {index + 1} differs from term {entry[0]}'s")
                if entry[3] == 0:
                    if (entry[1], entry[2]) in executed:
                        self.fail(COMMANDS_EXECUTE_ONCE, f"{node.name}: c{entry[1]}#{entry[2]} twice")
                    executed.add((entry[1], entry[2]))
            role = node.role
            if node.alive and isinstance(role, FollowerRole) and role.rejoined:
                leader = sim.acting_leader(role.term)
                if leader is not None and node.log != leader.log[: len(node.log)]:
                    self.fail(LOGS_ARE_PREFIXES, f"{node.name} follows term {role.term} but is not a prefix of {leader.name}'s log")
            if node.alive and role is not None and role.leads:
                if self.leaders.get(role.term) != node.idx:
                    self.fail(ONE_LEADER_PER_TERM, f"{node.name} leads term {role.term}, assigned to {self.leaders.get(role.term)}")
                size = self._reported_up_to(role.term)
                if node.log[:size] != self.committed[:size]:
                    self.fail(COMMITTED_RESULTS_SURVIVE, f"{node.name} leads term {role.term} without the committed log")


def _first_difference(log: list[Entry], other: list[Entry]) -> int:
    """The first position at which the two logs differ (one past the shorter if one is a prefix)."""
    for index, (a, b) in enumerate(zip(log, other, strict=False)):
        if a != b:
            return index + 1
    return min(len(log), len(other)) + 1


def _show(entry: Entry) -> str:
    term, client, seq, original = entry
    what = f"c{client}#{seq}" if original == 0 else f"c{client}#{seq} (duplicate of {original})"
    return f"[term {term} {what}]"
