"""A log's term ranges read from an archive, for rejoin (the decision is nodes.protocol.rejoin)."""

from __future__ import annotations

from archive import EventLog
from nodes.protocol.rejoin import TermRanges


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
