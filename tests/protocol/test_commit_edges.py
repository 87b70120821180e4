"""Edge cases of the commit rule and of rejoin's agreed position (DESIGN §4), table-driven:
members unknown or lagging, ties, W = 0/1/2 against fewer members, the term's first
position exactly, and logs that share several terms or none."""

from __future__ import annotations

import pytest

from nodes.protocol.commit import CommitTracker
from nodes.protocol.rejoin import agreed_position


@pytest.mark.parametrize(
    ("members", "acks", "leader_position", "term_start", "write_quorum", "commit"),
    [
        (None, [("a", 30)], 30, 11, 0, 30),  # W = 0 needs no members at all
        (None, [("a", 30)], 30, 11, 1, 0),  # members not known yet: no ack counts
        (("a",), [("a", 30)], 30, 11, 2, 0),  # W above the members: never commits
        (("a", "b"), [("a", 25), ("b", 25)], 30, 11, 2, 25),  # a tie is one position
        (("a", "b", "c"), [("a", 12), ("b", 29)], 30, 11, 1, 29),  # W = 1: the furthest
        (("a", "b", "c"), [("a", 12), ("b", 29)], 30, 11, 2, 12),  # W = 2: the lagging one
        (("a", "b", "c"), [("a", 12), ("b", 29)], 30, 11, 3, 0),  # c never acked
        (("a", "b"), [("a", 40), ("b", 40)], 35, 11, 2, 35),  # the leader is the bound
        (("a",), [("a", 11)], 30, 11, 1, 11),  # the term's first position counts
        (("a",), [("a", 10)], 30, 11, 1, 0),  # the one before it does not
        ((), [], 10, 11, 0, 0),  # W = 0, but nothing of this term yet
    ],
)
def test_commit_position_edges(members, acks, leader_position, term_start, write_quorum, commit):
    tracker = CommitTracker(term=4, term_start=term_start, leader_position=leader_position)
    if members is not None:
        tracker.set_members(members)
    for node, position in acks:
        tracker.record_ack(node, position, 4, "arch")
    assert tracker.commit_position(write_quorum) == commit


def test_a_member_added_later_counts_from_its_next_ack():
    tracker = CommitTracker(term=4, term_start=1, leader_position=30)
    tracker.set_members(["a"])
    assert not tracker.record_ack("b", 30, 4, "arch")
    tracker.set_members(["a", "b"])
    assert tracker.commit_position(1) == 0
    assert tracker.record_ack("b", 30, 4, "arch")
    assert tracker.commit_position(1) == 30
    assert tracker.acknowledged() == {"b": 30}


@pytest.mark.parametrize(
    ("mine", "theirs", "agreed"),
    [
        ([(1, 1, 50)], [(1, 1, 50)], 50),  # identical logs
        ([(1, 1, 50)], [(1, 1, 30)], 30),  # theirs is shorter in the common term
        ([(2, 1, 50)], [(1, 1, 50)], 0),  # no common term
        ([(1, 1, 10), (3, 11, 20)], [(1, 1, 10), (2, 11, 15), (3, 16, 25)], 20),  # highest overlap
        ([(1, 1, 10), (2, 11, 12)], [(1, 1, 10), (2, 11, 40)], 12),
        ([(5, 100, 120)], [(5, 130, 140)], 0),  # same term, ranges that do not meet (retention)
        ([], [], 0),
    ],
)
def test_agreed_position_edges(mine, theirs, agreed):
    assert agreed_position(mine, theirs) == agreed
    assert agreed_position(theirs, mine) == agreed  # symmetric
