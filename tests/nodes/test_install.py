"""Install from a snapshot: a fresh node, and a follower left behind the leader's retention,
join a cluster whose leader has pruned its log, and end with the leader's state."""

from __future__ import annotations

import pytest

from controlplane.clusters.models import Cluster
from nodes.state import NodeState
from tests.nodes.conftest import wait_until
from tests.nodes.test_replication import order_flow, submit_all

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def state_of(location: str) -> tuple[int, str, int]:
    """Rebuild an archive's state as a node does at start-up: (position, digest, first position held)."""
    state = NodeState(location)
    try:
        state.recover()
        return state.engine.position, state.engine.digest(), state.log.size().first
    finally:
        state.close()


def test_a_fresh_node_and_a_follower_behind_retention_install_the_leaders_snapshot(make_cluster):
    cluster = make_cluster(size=3, write_quorum=1, NODE_SNAPSHOT_EVERY="1500", NODE_STREAM_MAXLEN="500")
    Cluster.objects.filter(name=cluster.name).update(archive_keep_events=300)
    leader, follower, fresh = list(cluster.secrets)
    cluster.start(leader)
    cluster.start(follower)
    cluster.wait_live(leader, follower)
    client = cluster.client()
    cluster.add_instrument(client)
    submit_all(client, order_flow(client, 6000, seed=21))

    # The leader pruned its log: position 1 is gone from its archive.
    wait_until(lambda: cluster.row(leader).archive_first_position > 1, 60,
               lambda: f"the leader to prune its log\n{cluster.nodes.processes[leader].log_tail()}")  # fmt: skip

    # 1. A fresh node with an empty database joins, with no operator step but its start.
    cluster.start(fresh)
    target = cluster.row(leader).archived_position
    cluster.wait_applied(target, fresh, timeout=90)
    text = cluster.nodes.processes[fresh].log_path.read_text()
    assert "INSTALL: archive renewed" in text, text[-3000:]
    assert "installed " in text

    # 2. A follower stopped while the others go on comes back behind the leader's retention.
    row = cluster.row(follower)
    stopped_at, old_archive = row.archived_position, row.archive_id
    assert cluster.nodes.stop(follower) == 0
    submit_all(client, order_flow(client, 6000, seed=22))
    wait_until(lambda: cluster.row(leader).archive_first_position > stopped_at + 1, 60,
               lambda: f"the leader to prune past {stopped_at}\n{cluster.nodes.processes[leader].log_tail()}")  # fmt: skip
    cluster.start(follower)
    results = submit_all(client, order_flow(client, 300, seed=23))
    last = max(r.first_position + len(r.payloads) - 1 for r in results)
    cluster.wait_applied(last, leader, follower, fresh, timeout=90)
    assert "INSTALL: archive renewed" in cluster.nodes.processes[follower].log_path.read_text()

    # Every node ends with the leader's state at the same position, rebuilt from its own
    # (pruned) archive; the installed ones are voters again once caught up. The follower
    # reports its applied position while it installs, claiming no archive (so it is no
    # vote meanwhile): the renewed archive reaches the control plane with its next report.
    wait_until(lambda: cluster.row(follower).archive_id != old_archive, 30, "the follower to report its renewed archive")
    wait_until(lambda: not any(cluster.row(n).resyncing for n in (follower, fresh)), 30, "the installed nodes to resync")
    # The follower went through the archive-identity machinery: a reset was seen (a new
    # archive id where the control plane knew another), so it was a new empty replica until
    # it reached its resync target. The fresh node may renew its archive before its first
    # report reaches the control plane, which then has no older id to call it a reset by.
    row = cluster.row(follower)
    assert row.resync_epoch > 0, f"{follower}: no reset seen"
    assert row.resync_target is not None
    assert row.archived_position >= row.resync_target
    row = cluster.row(fresh)
    assert row.resync_target is None or row.archived_position >= row.resync_target
    cluster.nodes.stop_all()
    states = {name: state_of(location) for name, location in cluster.locations.items()}
    positions = {position for position, _digest, _first in states.values()}
    assert positions == {last}, states
    assert len({digest for _position, digest, _first in states.values()}) == 1, states
    assert all(first > 1 for _position, _digest, first in states.values()), states
