"""Failover time over many leader kills (test settings), and nothing committed lost.

Not in `make test` (about two minutes): `make failover-time` runs it and prints the
figures. Tests never assert on time; the figures are for the operator's eye.
"""

from __future__ import annotations

import statistics
import time

import pytest

from tests.nodes.conftest import SteadyLoad, assert_each_committed_command_once, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

KILLS = 20


def test_failover_time_over_twenty_leader_kills(make_cluster, supervisor):
    cluster = make_cluster(size=3, write_quorum=1)
    cluster.start_all()
    cluster.add_instrument(cluster.client())
    load = SteadyLoad(cluster, batch=5).start()
    load.wait_for(100)
    elected, first_commit = [], []
    for kill in range(KILLS):
        old = wait_until(
            lambda: (row := cluster.cluster).leader is not None and row.leader.name,
            30,
            lambda: f"a leader: {cluster.cluster.status_message}",
        )
        committed = len(load.committed)
        killed_at = time.monotonic()
        cluster.nodes.kill(old)
        wait_until(
            lambda old=old: (row := cluster.cluster).leader is not None and row.leader.name != old,
            30,
            lambda old=old, kill=kill: f"a leader other than {old} (kill {kill + 1}): {cluster.cluster.status_message}",
            interval=0.02,
        )
        elected.append(time.monotonic() - killed_at)
        wait_until(lambda committed=committed: len(load.committed) > committed, 30, "a commit after the kill", 0.01)
        first_commit.append(time.monotonic() - killed_at)
        cluster.start(old)  # the runner restarts it; it rejoins as a follower
        cluster.wait_live(old)
    load.stop()
    from controlplane.clusters.models import RoleChange

    for change in RoleChange.objects.filter(cluster__name=cluster.name).order_by("term"):
        print(f"term {change.term}: {change.old_leader} -> {change.new_leader}: {change.reason}")
    leader = cluster.cluster.leader.name
    assert_each_committed_command_once(load, cluster.locations[leader])
    for name, values in (("new leader elected", elected), ("first commit after the kill", first_commit)):
        ordered = sorted(values)
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
        print(
            f"\nFAILOVER over {KILLS} SIGKILLs (failover timeout 2.0 s, heartbeat 0.2 s, supervisor 0.2 s): "
            f"{name}: p50 {statistics.median(values):.2f} s, p99 {p99:.2f} s, max {max(values):.2f} s"
        )
