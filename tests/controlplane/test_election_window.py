"""DESIGN §4 "Election quorum" across configuration changes, and reports judged in order.

The election window: an election must overlap every commit not yet re-committed under
the current configuration. A leader's installation changes nothing; the window moves
only when the leader reports a commit of a position of its own term (`settled_quorum`).
"""

from __future__ import annotations

import pytest

from controlplane.clusters import services
from controlplane.clusters.models import Cluster, Node
from tests.controlplane.reports import report

pytestmark = pytest.mark.django_db

ACTOR = services.Actor("test")


def heartbeat(name: str, **fields) -> Node:
    values = {"status": "live", "archive_id": f"archive-of-{name}", "report_boot": "1", **fields}
    return services.record_heartbeat(name, services.HeartbeatReport(**values))


def test_a_new_leader_keeps_the_window_until_it_commits_a_position_of_its_own(cluster):
    """The loss the simulator found (seed 471): W raised after commits made with W = 1,
    and a leader that commits nothing of its own must not let the next election use W = 2."""
    services.set_write_quorum(cluster, 1, actor=ACTOR, live_followers=2)
    Cluster.objects.filter(pk=cluster.pk).update(replica_count=2)
    services.set_write_quorum(cluster, 2, actor=ACTOR, live_followers=2)
    services.assign_leader(cluster, "alpha-2", actor=ACTOR, reason="switchover")
    cluster.refresh_from_db()
    assert (cluster.write_quorum, cluster.term_write_quorum, cluster.term) == (2, 1, 2)

    contest, _ = services.election_of(cluster)
    assert contest.write_quorum == 1  # commits of term 1 may sit on one follower only

    heartbeat("alpha-2", term=2, archived_position=10, last_term=2, settled_quorum=2, report_seq=1)
    cluster.refresh_from_db()
    assert (cluster.settled_term, cluster.term_write_quorum) == (2, 2)
    assert services.election_of(cluster)[0].write_quorum == 2


def test_a_settle_of_an_older_term_changes_nothing(cluster):
    services.set_write_quorum(cluster, 1, actor=ACTOR, live_followers=2)
    heartbeat("alpha-1", term=0, archived_position=5, settled_quorum=1, report_seq=1)
    cluster.refresh_from_db()
    assert cluster.settled_term == 0


def test_a_node_removed_during_the_term_counts_until_the_next_settle(cluster):
    Cluster.objects.filter(pk=cluster.pk).update(write_quorum=1, term_write_quorum=1)
    services.remove_node("alpha-3", actor=ACTOR)
    heartbeat("alpha-1", term=1, archived_position=5, last_term=1, settled_quorum=1, report_seq=1)
    cluster.refresh_from_db()
    assert cluster.settled_term == 1
    assert "alpha-3" in services.election_of(cluster)[0].followers  # removed in term 1: still counts
    services.assign_leader(cluster, "alpha-2", actor=ACTOR, reason="switchover")
    heartbeat("alpha-2", term=2, archived_position=9, last_term=2, settled_quorum=1, report_seq=1)
    cluster.refresh_from_db()
    assert "alpha-3" not in services.election_of(cluster)[0].followers


def test_an_older_report_arriving_late_is_not_news(cluster):
    heartbeat("alpha-2", archived_position=50, last_term=1, report_seq=7)
    heartbeat("alpha-2", archived_position=20, last_term=1, report_seq=6)  # a slow request
    row = Node.objects.get(name="alpha-2")
    assert (row.archived_position, row.resyncing) == (50, False)
    # A new process (the archive's next boot) starts its numbers again...
    heartbeat("alpha-2", archived_position=50, last_term=1, report_seq=1, report_boot="2")
    assert Node.objects.get(name="alpha-2").report_seq == 1
    # ...and a late report of the process before it is stale news (simulator, seed 5190).
    heartbeat("alpha-2", archived_position=30, last_term=1, report_seq=9, report_boot="1")
    row = Node.objects.get(name="alpha-2")
    assert (row.archived_position, row.resyncing, row.report_boot) == (50, False, "2")


def test_a_rejoin_truncation_is_not_an_archive_loss(cluster):
    report("alpha-2", 80, fence_seen=1)
    heartbeat("alpha-2", archived_position=80, last_term=1, report_seq=1)
    heartbeat("alpha-2", archived_position=60, last_term=1, truncations=1, report_seq=2)
    assert Node.objects.get(name="alpha-2").resyncing is False
    heartbeat("alpha-2", archived_position=40, last_term=1, truncations=1, report_seq=3)
    assert Node.objects.get(name="alpha-2").resyncing is True  # back again without a rejoin
