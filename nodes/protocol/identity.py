"""Archive identity and position reports (DESIGN §4 "Archive identity").

Each archive gets an id when it is created. A node that reports another archive id than
the one on file, or a position lower than it reported before with the same archive, no
longer holds what it may have acknowledged: it becomes a *new empty replica* (resyncing)
that neither votes in an election nor leads, until it holds everything that may have
been committed while it was away. Its acks count only for what it has archived since
(commit.CommitTracker keys progress by archive id).

A position that went back with a higher count of rejoin truncations (kept in the archive)
is a rejoin, not a loss: rejoin drops only entries the new leader's log does not hold,
which were never committed, so the node still holds all it acknowledged that counts.

When does a resyncing node hold everything? Any position committed with its old
archive's help was archived by the leader before the node's reset was seen. A leader
report *built* after the reset was seen covers it. Heartbeat answers carry the cluster's
report epoch, bumped when a reset is seen, and every report echoes the epoch of the last
answer its node received: a leader report that echoes the reset's epoch (or a later one)
was built after that answer, so after the reset was seen, even when requests time out
and arrive late. Its position is the resync target.
"""

from __future__ import annotations

from dataclasses import dataclass

# The simulator still models the earlier, weaker rule (a target from the second leader
# report received after the reset); the control plane uses covers_reset.
LEADER_REPORTS_FOR_TARGET = 2


def covers_reset(echoed_epoch: int, reset_epoch: int) -> bool:
    """Was a leader report (echoing `echoed_epoch`) built after the reset seen at `reset_epoch`?"""
    return echoed_epoch >= reset_epoch > 0


@dataclass(frozen=True)
class OnFile:
    """What the control plane holds about a node."""

    archive_id: str
    position: int
    resyncing: bool
    resync_target: int | None
    truncations: int = 0  # rejoin truncations of that archive, as last reported


@dataclass(frozen=True)
class Claim:
    """What a heartbeat says."""

    archive_id: str
    position: int
    last_term: int
    fence_seen: int
    truncations: int = 0


@dataclass(frozen=True)
class Verdict:
    refuse: str = ""  # non-empty: an impossible report, refused and logged
    resyncing: bool = False
    reset: bool = False  # this report starts a resync (reset archive, or position went back)
    reason: str = ""


def judge(on_file: OnFile, claim: Claim, cluster_term: int) -> Verdict:
    """Accept, refuse, or mark as a new empty replica; plain values in and out."""
    if claim.last_term > cluster_term:
        return Verdict(refuse=f"claims events of term {claim.last_term}, but the cluster is at term {cluster_term}")
    if claim.fence_seen > cluster_term:
        return Verdict(refuse=f"claims fence {claim.fence_seen}, but the cluster is at term {cluster_term}")
    if not claim.archive_id:
        # Not opened its archive yet (start-up): nothing to judge, keep what is on file.
        return Verdict(resyncing=on_file.resyncing)
    if on_file.archive_id and claim.archive_id != on_file.archive_id:
        return Verdict(
            resyncing=True, reset=True,
            reason=f"archive changed ({on_file.archive_id[:8]} -> {claim.archive_id[:8]}): a new empty replica",
        )  # fmt: skip
    if on_file.archive_id and claim.position < on_file.position and claim.truncations <= on_file.truncations:
        return Verdict(
            resyncing=True, reset=True,
            reason=f"position went back from {on_file.position} to {claim.position}: resyncing",
        )  # fmt: skip
    if on_file.resyncing:
        if on_file.resync_target is not None and claim.position >= on_file.resync_target:
            return Verdict(resyncing=False, reason=f"resynced to {claim.position}: votes and may lead again")
        return Verdict(resyncing=True)
    return Verdict()
