"""DESIGN §4 "Fencing", "Missing fence", "Lease", "Archive identity", "Rejoin", table-driven."""

from __future__ import annotations

import pytest

from nodes.protocol.fencing import FenceVerdict, check, restore_to
from nodes.protocol.identity import Claim, OnFile, judge
from nodes.protocol.lease import Lease
from nodes.protocol.rejoin import agreed_position, needs_rejoin, truncate_after


@pytest.mark.parametrize(
    ("fence", "term", "verdict"),
    [(None, 3, FenceVerdict.MISSING), (3, 3, FenceVerdict.OK), (2, 3, FenceVerdict.BEHIND), (4, 3, FenceVerdict.DEPOSED)],
)
def test_fence_verdicts(fence, term, verdict):
    assert check(fence, term) == verdict


@pytest.mark.parametrize(
    ("database_term", "fence", "restore"),
    [(0, None, None), (5, None, 5), (5, 4, 5), (5, 5, None), (5, 6, None)],
)
def test_the_fence_is_restored_from_the_database_never_lower(database_term, fence, restore):
    assert restore_to(database_term, fence) == restore


def test_lease_runs_from_when_the_renewal_was_sent():
    lease = Lease(duration=1.0)
    assert not lease.valid(0.0)
    lease.renewed(sent_at=10.0)  # answered at, say, 10.8: the send time counts
    assert lease.valid(10.9)
    assert not lease.valid(11.0)
    lease.renewed(sent_at=9.0)  # an older renewal answered late changes nothing
    assert not lease.valid(11.0)


FILE = OnFile(archive_id="a1", position=100, resyncing=False, resync_target=None)


@pytest.mark.parametrize(
    ("claim", "refused", "resyncing", "reset"),
    [
        (Claim("a1", 120, 4, 5), False, False, False),
        (Claim("b2", 0, 0, 5), False, True, True),  # a new archive: a new empty replica
        (Claim("a1", 90, 4, 5), False, True, True),  # position went back
        (Claim("a1", 90, 4, 5, truncations=1), False, False, False),  # a rejoin truncation, not a loss
        (Claim("a1", 120, 6, 5), True, False, False),  # events of a future term
        (Claim("a1", 120, 4, 6), True, False, False),  # a fence the database never had
        (Claim("", 0, 0, 0), False, False, False),  # archive not opened yet: nothing to judge
    ],
)
def test_archive_identity(claim, refused, resyncing, reset):
    verdict = judge(FILE, claim, cluster_term=5)
    assert (bool(verdict.refuse), verdict.resyncing, verdict.reset) == (refused, resyncing, reset)


def test_a_resyncing_node_votes_again_once_it_reaches_its_target():
    waiting = OnFile("b2", 50, resyncing=True, resync_target=None)
    assert judge(waiting, Claim("b2", 500, 5, 5), 5).resyncing  # no target yet: keep waiting
    target = OnFile("b2", 50, resyncing=True, resync_target=120)
    assert judge(target, Claim("b2", 119, 5, 5), 5).resyncing
    assert not judge(target, Claim("b2", 120, 5, 5), 5).resyncing


@pytest.mark.parametrize(
    ("mine", "theirs", "agreed", "cut"),
    [
        ([(1, 1, 50)], [(1, 1, 50), (2, 51, 60)], 50, None),  # a prefix: keep all
        ([(1, 1, 70)], [(1, 1, 50), (2, 51, 60)], 50, 50),  # a deposed leader's tail: cut it
        ([(1, 1, 40), (3, 41, 45)], [(1, 1, 50), (2, 51, 60)], 40, 40),
        ([(2, 1, 10)], [(1, 1, 10)], 0, 0),
        ([], [(1, 1, 10)], 0, None),
    ],
)
def test_rejoin_truncates_after_the_last_agreeing_position(mine, theirs, agreed, cut):
    assert agreed_position(mine, theirs) == agreed
    assert truncate_after(mine, theirs) == cut


def test_rejoin_only_when_the_log_ends_in_an_older_term():
    assert needs_rejoin(tail=10, tail_term=2, leader_term=3)
    assert not needs_rejoin(tail=10, tail_term=3, leader_term=3)
    assert not needs_rejoin(tail=0, tail_term=0, leader_term=3)


@pytest.mark.parametrize(
    ("agreed", "first_held", "install"),
    [
        (500, 1, False),  # a whole log: cut and replay
        (500, 400, False),  # the agreed position is still held: cut there
        (500, 500, False),  # the cut keeps one entry (a snapshot at 500 may rebuild it)
        (500, 501, True),  # the cut would empty the log: install
        (0, 300, True),
    ],
)
def test_a_rejoin_below_the_retained_log_installs_a_snapshot_instead(agreed, first_held, install):
    from nodes.protocol.rejoin import install_instead

    assert install_instead(agreed, first_held) is install
