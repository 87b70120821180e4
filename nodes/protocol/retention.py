"""Retention: how much of its log a node may delete, as plain values (Kafka's log retention,
Aeron's archive truncation behind a snapshot).

A node deletes the entries below a *cut*: it keeps the entry at the cut and everything
after it. Three bounds, the lowest wins:

- its latest *verified* snapshot: start-up restores it and replays what follows, and a
  snapshot install sends it with the entries from its position on;
- the lowest position a live member holds (`member_floor`): a follower at position p
  reads p + 1 onwards from the live stream or, behind it, from a catch-up replay of this
  archive; entries up to p it needs no more;
- the minimum window: the newest `keep_events` entries always stay, so a follower that
  restarts, or one not heard for a moment, catches up from the log instead of needing a
  snapshot.

A member that is not live (down, starting, not heard within the failover timeout) does
not hold the cut back: if it comes back behind the cut, it installs a snapshot (Raft's
InstallSnapshot) rather than keep every archive growing while it is away.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Member:
    """What the control plane knows of one node, for the floor."""

    name: str
    position: int  # archived position, as last reported
    live: bool  # reporting within the failover timeout, and following or leading
    removed: bool = False


def member_floor(members: Iterable[Member]) -> int | None:
    """The lowest position a live member holds; None when no member is live (cut nothing)."""
    positions = [m.position for m in members if m.live and not m.removed]
    return min(positions) if positions else None


def cut(
    *,
    first: int,
    tail: int,
    snapshot: int | None,
    floor: int | None,
    keep_events: int,
) -> int:
    """The position below which entries may be deleted now; `first` (nothing) when none may.

    first..tail: what the log holds; snapshot: the latest verified snapshot's position
    (None: nothing may go); floor: member_floor() (None: nothing may go)."""
    if snapshot is None or floor is None or tail == 0 or keep_events < 0:
        return first
    bound = min(snapshot, floor + 1, tail - keep_events + 1)
    return max(first, bound)
