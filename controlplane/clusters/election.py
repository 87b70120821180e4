"""Pure decisions of the supervisor: who is offline, who wins an election. Plain values in and out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Candidate:
    name: str
    role: str
    status: str
    last_heartbeat: datetime | None
    archived_position: int
    applied_position: int


def is_silent(node: Candidate, now: datetime, timeout: float) -> bool:
    return node.last_heartbeat is None or (now - node.last_heartbeat).total_seconds() > timeout


def choose_leader(
    followers: list[Candidate], old_leader: Candidate | None, now: datetime, timeout: float
) -> tuple[Candidate | None, str]:
    """The live follower with the highest archived position (ties: smallest apply lag,
    then name), judged only on heartbeats sent after the old leader went silent, so no
    candidate's position is stale. Returns (winner or None, why)."""
    silent_since = old_leader.last_heartbeat if old_leader else None
    eligible, reasons = [], []
    for node in followers:
        if node.status not in ("live",) or is_silent(node, now, timeout):
            reasons.append(f"{node.name} is not live")
        elif silent_since is not None and node.last_heartbeat <= silent_since:
            reasons.append(f"{node.name} has not reported since the leader went silent")
        else:
            eligible.append(node)
    if not eligible:
        return None, "no eligible follower: " + ("; ".join(reasons) or "the cluster has no followers")
    eligible.sort(key=lambda n: (-n.archived_position, n.archived_position - n.applied_position, n.name))
    winner = eligible[0]
    return winner, f"{winner.name} has the highest archived position ({winner.archived_position})"
