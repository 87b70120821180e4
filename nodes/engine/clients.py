"""Idempotency records: per client its last sequence and a window of its last commands.

A client's record is ``[last_seq, ring, n]``: ``ring`` holds its last ``DEDUP_WINDOW``
processed commands as (seq, first position, event count) triples in machine ints (no
objects to allocate or free per command), ``n`` counts all it recorded. A seq in the
window is answered with ``CommandDuplicate``; a lower one with ``STALE_SEQUENCE``.
"""

from __future__ import annotations

from array import array

from nodes.engine.base import EngineState
from nodes.engine.types import DEDUP_WINDOW, Reason

EMPTY_RING = bytes(8 * 3 * DEDUP_WINDOW)

# Rejections that do not consume the client's sequence number: the command was not
# processed, so a later command may reuse the sequence and no duplicate answer points here.
UNRECORDED = (int(Reason.INVALID_SEQUENCE), int(Reason.STALE_SEQUENCE))


def new_client() -> list:
    return [0, array("q", EMPTY_RING), 0]


def window(client: list) -> list[list[int]]:
    """A client's remembered commands as [seq, first position, count], oldest first."""
    ring, n = client[1], client[2]
    out = []
    for i in range(max(0, n - DEDUP_WINDOW), n):
        slot = i % DEDUP_WINDOW * 3
        out.append([ring[slot], ring[slot + 1], ring[slot + 2]])
    return out


def find(client: list, seq: int) -> tuple[int, int] | None:
    """(first position, event count) of the command ``seq`` if the window holds it.

    The window's sequences increase from its oldest command to its newest, so this is a
    binary search: a leader that re-runs commands it already took (its lease lapsed)
    answers each duplicate in a few steps, not a scan of the window."""
    ring, n = client[1], client[2]
    low, high = max(0, n - DEDUP_WINDOW), n - 1
    while low <= high:
        middle = (low + high) // 2
        slot = middle % DEDUP_WINDOW * 3
        found = ring[slot]
        if found == seq:
            return ring[slot + 1], ring[slot + 2]
        if found < seq:
            low = middle + 1
        else:
            high = middle - 1
    return None


def open_single(
    engine: EngineState, client: list | None, cid: str, seq: int, position: int
) -> None:
    """Records a new command whose result so far is the one event at ``position`` and
    leaves it open for more (the fused paths' share of what ``apply_batch`` does inline
    for every first event of a result)."""
    if client is None:
        client = engine._clients[cid] = new_client()
    client[0] = seq
    ring = client[1]
    slot = client[2] % DEDUP_WINDOW * 3
    ring[slot] = seq
    ring[slot + 1] = position
    ring[slot + 2] = 1
    client[2] += 1
    engine._open_cid = cid
    engine._open_seq = seq
    engine._open_ring = ring
    engine._open_slot = slot + 2
