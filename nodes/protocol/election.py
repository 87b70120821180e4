"""Who may lead next (DESIGN §4 "Election restriction" and "Election quorum").

An election happens in two steps. First the term of the silent leader ends: the control
plane commits term E (no leader yet) and then moves the fence to E, after which the old
leader can neither publish, deliver a result, nor count an ack. Then the nodes report,
each having read the fence (>= E) *before* measuring its own log; those reports are the
votes. A report built before the fence moved may miss acks the old leader still counted,
so it does not count.

The winner is the live candidate with the highest (term of its last archived event,
position), compared as Raft §5.4.1 does, never by position alone. It wins only when
enough voters are no further than it: either the old leader itself (it held every
commit of its term), or N - W + 1 of the N followers of the term that ended, since every
set of W followers that acknowledged a commit overlaps every such set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nodes.protocol.quorum import election_quorum


@dataclass(frozen=True)
class Report:
    """A node's latest report, as the control plane holds it."""

    name: str
    fence_seen: int  # the fence the node read before measuring its log (0: none)
    last_term: int  # term of its last archived event
    position: int  # its last archived position
    live: bool  # reporting now, started, its archive open: may lead
    voter: bool = True  # False: a new empty replica (archive reset, resyncing)

    @property
    def log_key(self) -> tuple[int, int]:
        return (self.last_term, self.position)


@dataclass(frozen=True)
class Election:
    term: int  # the fenced term a leader is chosen for
    followers: tuple[str, ...]  # the N followers of the term that ended (members, removed ones included)
    write_quorum: int  # the lowest W in force during that term
    old_leader: str | None  # the leader of the term that ended


@dataclass(frozen=True)
class Decision:
    winner: str | None
    reason: str
    heard: int = 0  # followers whose fresh report supports the best candidate
    needed: int = 0
    forced: bool = False
    at_risk: str = ""  # forced: what the winner does not hold that another node reported


def decide(
    election: Election, reports: Sequence[Report], *, force: str | None = None, prefer: str | None = None
) -> Decision:
    """Choose the next leader, or say exactly why not yet. `prefer` wins ties on the log
    (an operator's choice among equals); `force` skips the rules (audited by the caller)."""
    needed = election_quorum(len(election.followers), election.write_quorum)
    if force is not None:
        return _forced(election, reports, force, needed)
    fresh = [r for r in reports if r.voter and r.fence_seen >= election.term]
    candidates = sorted(
        (r for r in fresh if r.live), key=lambda r: (r.log_key, r.name == prefer, _neg(r.name)), reverse=True
    )
    stale = sorted(r.name for r in reports if r.voter and r.fence_seen < election.term)
    resyncing = sorted(r.name for r in reports if not r.voter)
    if not candidates:
        return Decision(None, _waiting(election, "no live candidate has reported", 0, needed, stale, resyncing), 0, needed)
    best = candidates[0]
    supporters = [r for r in fresh if r.log_key <= best.log_key]
    if election.old_leader is not None and any(r.name == election.old_leader for r in supporters):
        return Decision(
            best.name,
            f"{best.name} has the most complete log (term {best.last_term}, position {best.position}); "
            f"old leader {election.old_leader} reported after term {election.term} was fenced",
            len(supporters), needed,
        )  # fmt: skip
    heard = sum(1 for r in supporters if r.name in election.followers)
    if heard < needed:
        ahead = [r.name for r in fresh if r.log_key > best.log_key]
        detail = f"best live candidate {best.name} (term {best.last_term}, position {best.position})"
        if ahead:
            detail += f"; {', '.join(ahead)} reported more but cannot lead"
        return Decision(None, _waiting(election, detail, heard, needed, stale, resyncing), heard, needed)
    lossy = " (write quorum 0: results the old leader acknowledged alone may be lost)" if election.write_quorum == 0 else ""
    return Decision(
        best.name,
        f"{best.name} has the most complete log (term {best.last_term}, position {best.position}) "
        f"among {heard} of {len(election.followers)} followers heard after term {election.term} was fenced "
        f"(need {needed}){lossy}",
        heard, needed,
    )  # fmt: skip


def _neg(name: str) -> tuple[int, ...]:
    # Ties on (term, position) go to the smallest name, in a descending sort.
    return tuple(-ord(c) for c in name)


def _waiting(election: Election, detail: str, heard: int, needed: int, stale: list[str], resyncing: list[str]) -> str:
    more = needed - heard
    parts = [
        f"waiting for {more} more follower report{'s' if more != 1 else ''}: need {needed} of "
        f"{len(election.followers)} after term {election.term} was fenced ({detail})"
    ]
    if stale:
        parts.append(f"not yet reported since the fence moved: {', '.join(stale)}")
    if resyncing:
        parts.append(f"new empty replicas, not counted: {', '.join(resyncing)}")
    return "; ".join(parts)


def _forced(election: Election, reports: Sequence[Report], force: str, needed: int) -> Decision:
    target = next((r for r in reports if r.name == force), None)
    if target is None or not target.live:
        return Decision(None, f"cannot force {force}: it is not a live node of the cluster", 0, needed)
    ahead = [r for r in reports if r.log_key > target.log_key]
    at_risk = "; ".join(
        f"{r.name} holds up to position {r.position} (term {r.last_term})" for r in sorted(ahead, key=lambda r: r.name)
    )
    reason = (
        f"FORCED election of {force} (term {target.last_term}, position {target.position}) by an operator, "
        f"without the safety rules"
    )
    reason += f": may lose what it does not hold: {at_risk}" if at_risk else ": no node reported more than it"
    return Decision(force, reason, 0, needed, forced=True, at_risk=at_risk)
