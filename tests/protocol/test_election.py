"""DESIGN §4 "Election restriction" and "Election quorum", table-driven."""

from __future__ import annotations

import pytest

from nodes.protocol.election import Election, Report, decide


def R(name, fence, last_term, position, live=True, voter=True) -> Report:
    return Report(name, fence, last_term, position, live, voter)


TWO = Election(term=5, followers=("b", "c"), write_quorum=1, old_leader="a")


def test_restriction_compares_last_term_before_position():
    """Loss path 1: the node with the longer log of an older term must lose."""
    decision = decide(TWO, [R("b", 5, 3, 120), R("c", 5, 4, 101)])
    assert decision.winner == "c"


def test_reports_built_before_the_fence_moved_do_not_count():
    """Loss path 2: a stale report is no vote; with N=2, W=1 both followers must report."""
    decision = decide(TWO, [R("b", 5, 4, 100), R("c", 4, 4, 101)])
    assert decision.winner is None
    assert "waiting for 1 more follower report: need 2 of 2 after term 5 was fenced" in decision.reason
    assert "not yet reported since the fence moved: c" in decision.reason


def test_the_old_leader_alone_settles_it():
    decision = decide(TWO, [R("a", 5, 4, 130), R("b", 5, 4, 100, live=False)])
    assert decision.winner == "a"


def test_a_dead_voter_ahead_of_every_live_candidate_blocks_that_quorum():
    decision = decide(TWO, [R("b", 5, 4, 130, live=False), R("c", 5, 4, 101)])
    assert decision.winner is None
    assert "b reported more but cannot lead" in decision.reason


def test_a_dead_voter_behind_the_candidate_still_votes():
    decision = decide(TWO, [R("b", 5, 4, 90, live=False), R("c", 5, 4, 101)])
    assert decision.winner == "c"


def test_new_empty_replicas_neither_vote_nor_lead():
    """Archive identity: a reset archive is not a candidate and does not count."""
    decision = decide(TWO, [R("b", 5, 4, 200, voter=False), R("c", 5, 4, 101)])
    assert decision.winner is None
    assert "new empty replicas, not counted: b" in decision.reason


@pytest.mark.parametrize(
    ("followers", "write_quorum", "reporting", "elected"),
    [
        (("b", "c", "d", "e"), 2, ("b", "c"), False),  # N=4, W=2: need 3
        (("b", "c", "d", "e"), 2, ("b", "c", "d"), True),
        (("b", "c"), 2, ("b",), True),  # W=N: one follower holds every commit
        (("b", "c"), 0, ("b",), True),  # W=0: one report, and it says what may be lost
    ],
)
def test_election_quorum_is_n_minus_w_plus_one(followers, write_quorum, reporting, elected):
    contest = Election(term=7, followers=followers, write_quorum=write_quorum, old_leader="a")
    decision = decide(contest, [R(name, 7, 6, 50) for name in reporting])
    assert (decision.winner is not None) is elected


def test_ties_go_to_the_preferred_then_the_smallest_name():
    reports = [R("b", 5, 4, 100), R("c", 5, 4, 100)]
    assert decide(TWO, reports).winner == "b"
    assert decide(TWO, reports, prefer="c").winner == "c"


def test_force_elects_and_names_what_may_be_lost():
    decision = decide(TWO, [R("b", 4, 4, 130), R("c", 5, 4, 101)], force="c")
    assert decision.winner == "c"
    assert decision.forced
    assert "b holds up to position 130 (term 4)" in decision.at_risk


def test_force_refuses_a_node_that_is_not_live():
    decision = decide(TWO, [R("b", 5, 4, 100, live=False)], force="b")
    assert decision.winner is None
