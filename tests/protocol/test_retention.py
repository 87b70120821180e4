"""Retention (nodes.protocol.retention): what a node may delete, and what it must keep."""

from __future__ import annotations

import pytest

from nodes.protocol.retention import Member, cut, member_floor


@pytest.mark.parametrize(
    ("first", "tail", "snapshot", "floor", "keep", "expected"),
    [
        (1, 1000, None, 900, 0, 1),  # no verified snapshot: nothing goes (start-up replays from 1)
        (1, 1000, 800, None, 0, 1),  # no live member known: nothing goes
        (1, 1000, 800, 900, 0, 800),  # the snapshot's own entry stays (an install starts there)
        (1, 1000, 800, 500, 0, 501),  # a member at 500 reads 501 onwards
        (1, 1000, 800, 900, 300, 701),  # the newest 300 stay whatever the rest says
        (1, 1000, 800, 900, 5000, 1),  # a window longer than the log keeps it all
        (600, 1000, 800, 900, 0, 800),  # already cut to 600: on from there
        (900, 1000, 800, 950, 0, 900),  # never back below what is already gone
        (0, 0, None, None, 0, 0),  # empty log
    ],
)
def test_cut(first, tail, snapshot, floor, keep, expected):
    assert cut(first=first, tail=tail, snapshot=snapshot, floor=floor, keep_events=keep) == expected


def test_the_floor_is_the_lowest_position_a_live_member_holds():
    members = [
        Member("leader", 1000, live=True),
        Member("follower", 640, live=True),  # catching up: needs 641 onwards
        Member("down", 10, live=False),  # comes back through a snapshot install if it must
        Member("removed", 5, live=True, removed=True),
    ]
    assert member_floor(members) == 640
    assert member_floor([Member("down", 10, live=False)]) is None


@pytest.mark.parametrize("floor", [0, 1, 250, 499, 500, 999])
def test_nothing_a_live_member_needs_is_ever_cut(floor):
    """Whatever the snapshot and window, every position after the floor stays."""
    for snapshot in (None, 1, 300, 600, 1000):
        for keep in (0, 10, 2000):
            assert cut(first=1, tail=1000, snapshot=snapshot, floor=floor, keep_events=keep) <= floor + 1
            if snapshot is not None:
                assert cut(first=1, tail=1000, snapshot=snapshot, floor=floor, keep_events=keep) <= snapshot
