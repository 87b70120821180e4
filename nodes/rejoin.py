"""Rejoin: where a node's log and the leader's agree, as plain values (DESIGN §4 "Rejoin").

Terms never decrease along a log and one leader writes each term, so two logs holding
the same term at the same position agree on every entry up to it. Each log is described
by its term ranges [(term, first, last), ...]; the last agreeing position is the highest
position both hold in a common term.
"""

from __future__ import annotations

from archive import EventLog

TermRanges = list[tuple[int, int, int]]


def term_ranges(log: EventLog) -> TermRanges:
    """(term, first position, last position) of each term in the log, oldest first.

    O(terms x log n) indexed lookups: terms are non-decreasing along positions, so
    each term's first position is found by binary search.
    """
    ranges: TermRanges = []
    high, _ = log.tail()
    while high >= 1:
        term = log.term_at(high)
        if term is None:  # below the retention point
            break
        lo, hi = 1, high
        while lo < hi:  # smallest position in [lo, high] whose term is `term`
            mid = (lo + hi) // 2
            mid_term = log.term_at(mid)
            if mid_term is None or mid_term < term:
                lo = mid + 1
            else:
                hi = mid
        ranges.append((term, lo, high))
        high = lo - 1
    ranges.reverse()
    return ranges


def agreed_position(mine: TermRanges, theirs: TermRanges) -> int:
    """The last position at which both logs hold the same term (0 if none)."""
    their_by_term = {term: (first, last) for term, first, last in theirs}
    agreed = 0
    for term, first, last in mine:
        if term in their_by_term:
            their_first, their_last = their_by_term[term]
            if max(first, their_first) <= min(last, their_last):
                agreed = max(agreed, min(last, their_last))
    return agreed
