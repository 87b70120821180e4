"""DESIGN §4 "Commit rule": leader + W current members, acked in this term, for positions they hold."""

from __future__ import annotations

import pytest

from nodes.protocol.commit import CommitTracker


def tracker(members=("a", "b", "c"), term=3, term_start=11, leader_position=20) -> CommitTracker:
    t = CommitTracker(term=term, term_start=term_start, leader_position=leader_position)
    t.set_members(members)
    return t


@pytest.mark.parametrize(
    ("acks", "write_quorum", "commit"),
    [
        ([], 0, 20),  # W = 0: the leader alone
        ([], 1, 0),
        ([("a", 15)], 1, 15),
        ([("a", 15)], 2, 0),
        ([("a", 15), ("b", 18)], 2, 15),
        ([("a", 15), ("b", 18), ("c", 25)], 2, 18),
        ([("a", 25), ("b", 25)], 2, 20),  # never past the leader's own archive
        ([("a", 9)], 1, 0),  # below the term's first position: older entries are not counted (Raft §5.4.2)
    ],
)
def test_commit_position(acks, write_quorum, commit):
    t = tracker()
    for node, position in acks:
        t.record_ack(node, position, 3, "arch")
    assert t.commit_position(write_quorum) == commit


def test_acks_of_another_term_never_count():
    t = tracker()
    assert not t.record_ack("a", 20, 2, "arch")
    assert t.commit_position(1) == 0


def test_acks_of_a_non_member_never_count_and_a_removed_member_stops_counting():
    t = tracker(members=("a",))
    assert not t.record_ack("z", 20, 3, "arch")
    assert t.record_ack("a", 20, 3, "arch")
    assert t.commit_position(1) == 20
    t.set_members(())  # a removed from the cluster
    assert t.commit_position(1) == 0


def test_the_latest_ack_counts_not_the_highest_ever():
    """A follower that truncated reports a lower position: it no longer holds the rest."""
    t = tracker()
    t.record_ack("a", 20, 3, "arch")
    t.record_ack("a", 12, 3, "arch")
    assert t.commit_position(1) == 12


def test_a_reset_archive_counts_only_for_what_it_archived_since():
    t = tracker()
    t.record_ack("a", 20, 3, "old")
    t.record_ack("a", 0, 3, "new")
    assert t.commit_position(1) == 0
    t.record_ack("a", 14, 3, "new")
    assert t.commit_position(1) == 14
