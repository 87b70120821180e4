"""What the fence (the current term, kept in Redis) allows a node of a given term to do.

The Lua scripts in archive/ (publish, deliver, acknowledge) implement exactly this check
atomically with their write; this module is the same rule for the node's own decisions
and for the simulator.
"""

from __future__ import annotations

from enum import StrEnum


class FenceVerdict(StrEnum):
    OK = "ok"  # the fence is at our term: go on
    MISSING = "missing"  # Redis lost it: hold everything until the control plane restores it
    BEHIND = "behind"  # the fence is below our term: the control plane has not raised it yet, wait
    DEPOSED = "deposed"  # a newer term exists: this term is over for good


def check(fence: int | None, term: int) -> FenceVerdict:
    """May a write of `term` (a publish, a delivery of results, an ack) go through?"""
    if fence is None:
        return FenceVerdict.MISSING
    if fence == term:
        return FenceVerdict.OK
    if fence < term:
        return FenceVerdict.BEHIND
    return FenceVerdict.DEPOSED


def restore_to(database_term: int, fence: int | None) -> int | None:
    """The value to write to the fence so that it matches the database, or None.

    The database's term is the truth and is committed first; the fence follows it and
    only ever moves up (never set lower than the database's term, DESIGN §4).
    """
    if database_term < 1:
        return None
    if fence is None or fence < database_term:
        return database_term
    return None
