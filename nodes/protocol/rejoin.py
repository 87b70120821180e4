"""Rejoin: where a node's log and the leader's agree, as plain values (DESIGN §4 "Rejoin").

Terms never decrease along a log and one leader writes each term, so two logs holding
the same term at the same position agree on every entry up to it. Each log is described
by its term ranges [(term, first, last), ...]; the last agreeing position is the highest
position both hold in a common term.
"""

from __future__ import annotations

TermRanges = list[tuple[int, int, int]]


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


def needs_rejoin(tail: int, tail_term: int, leader_term: int) -> bool:
    """A log that ends in an older term than the leader's may hold a deposed leader's
    uncommitted tail: compare it with the leader's before following."""
    return tail > 0 and tail_term < leader_term


def install_instead(agreed: int, first_held: int) -> bool:
    """A cut below the first position our log still holds (retention deleted the rest,
    behind a snapshot that holds the disagreeing tail too) would leave an empty log: our
    position would go back as if by a rejoin, though what we acknowledged is gone.
    Renew the archive and install a snapshot instead (a new empty replica, DESIGN §4
    "Archive identity"). A cut at or above it keeps a log; if no snapshot of it is left
    to replay from, start-up renews the archive the same way (NodeState.recover)."""
    return agreed < first_held


def truncate_after(mine: TermRanges, theirs: TermRanges) -> int | None:
    """Where to cut our log so that it is a prefix of the leader's, or None to keep it all."""
    if not mine:
        return None
    tail = mine[-1][2]
    agreed = agreed_position(mine, theirs)
    return agreed if agreed < tail else None
