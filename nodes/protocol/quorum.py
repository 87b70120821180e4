"""Replicas (N), write quorum (W), election quorum, and what a choice tolerates (DESIGN §4)."""

from __future__ import annotations

from dataclasses import dataclass


def default_write_quorum(replicas: int) -> int:
    """The majority default: W = ceil(N / 2) (N = 2 -> 1, N = 3 -> 2, N = 4 -> 2)."""
    if replicas < 0:
        raise ValueError(f"replicas must be >= 0, got {replicas}")
    return (replicas + 1) // 2


def election_quorum(followers: int, write_quorum: int) -> int:
    """How many followers must report, after the fence moved, before a leader is chosen.

    Every set of W followers that acknowledged a commit overlaps every set of N - W + 1
    followers (W + N - W + 1 > N), so one of the reporters holds every committed event
    (Patroni's quorum invariant). With W = 0 the leader committed alone: no set of
    followers can be sure to hold its results, so one report is enough and the
    election may lose what the old leader acknowledged (Kafka's acks=1).
    """
    if write_quorum <= 0:
        return 1
    return max(followers - write_quorum + 1, 1)


@dataclass(frozen=True)
class Tolerance:
    """What a (replicas, write quorum) choice survives."""

    nodes_down: int  # any this many nodes down (leader included): trading goes on
    archives_lost: int  # this many archives lost at once: nothing committed is lost
    text: str


def tolerance(replicas: int, write_quorum: int) -> Tolerance:
    """With N followers and W acks per commit:

    - only followers down: commits go on while W of N are up (N - W down);
    - the leader down too: an election needs N - W + 1 followers, and commits after it
      W followers besides the new leader, so d followers down with d <= W - 1 and
      N - 1 - d >= W.
    Any k nodes down is survived when both cases hold: k <= min(W, N - W).
    """
    n, w = replicas, write_quorum
    if not 0 <= w <= n:
        raise ValueError(f"write quorum {w} must be between 0 and the replica count {n}")
    if w == 0:
        down = 0 if n == 0 else n  # followers may all be down; a leader loss may lose results
        text = (
            f"commits on the leader alone: survives {down} follower(s) down; "
            "a leader failure may lose results already reported (like Kafka's acks=1)"
        )
        return Tolerance(down, 0, text)
    down = min(w, n - w)
    stops = "stops trading when any node is down" if down == 0 else f"survives {down} node(s) down without stopping"
    text = f"{stops}; loses nothing with {w} archive(s) lost"
    return Tolerance(down, w, text)
