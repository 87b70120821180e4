"""DESIGN §4 "Replicas and quorum": W defaults to the majority; elections overlap every commit."""

from __future__ import annotations

import itertools

import pytest

from nodes.protocol.quorum import default_write_quorum, election_quorum, tolerance


@pytest.mark.parametrize(("replicas", "write_quorum"), [(0, 0), (1, 1), (2, 1), (3, 2), (4, 2), (5, 3)])
def test_default_write_quorum_is_the_majority(replicas, write_quorum):
    assert default_write_quorum(replicas) == write_quorum


@pytest.mark.parametrize("replicas", range(0, 6))
def test_every_commit_set_overlaps_every_election_quorum(replicas):
    """Patroni's quorum invariant, checked exhaustively: any W followers that acked a
    commit share at least one member with any N - W + 1 followers that elect."""
    followers = range(replicas)
    for write_quorum in range(1, replicas + 1):
        needed = election_quorum(replicas, write_quorum)
        for acked in itertools.combinations(followers, write_quorum):
            for heard in itertools.combinations(followers, needed):
                assert set(acked) & set(heard), (replicas, write_quorum, acked, heard)


@pytest.mark.parametrize(
    ("replicas", "write_quorum", "down", "archives", "words"),
    [
        (2, 1, 1, 1, "survives 1 node(s) down without stopping; loses nothing with 1 archive(s) lost"),
        (2, 2, 0, 2, "stops trading when any node is down"),
        (4, 2, 2, 2, "survives 2 node(s) down"),
        (2, 0, 2, 0, "may lose results already reported"),
    ],
)
def test_tolerance_says_what_a_choice_survives(replicas, write_quorum, down, archives, words):
    said = tolerance(replicas, write_quorum)
    assert (said.nodes_down, said.archives_lost) == (down, archives)
    assert words in said.text


def test_write_quorum_above_the_replicas_is_refused():
    with pytest.raises(ValueError, match="between 0 and the replica count"):
        tolerance(2, 3)
