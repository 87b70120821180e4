"""Switchover, replica-count and write-quorum rules that need no running node."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from controlplane.clusters import services, switchover
from controlplane.clusters.models import Node
from tests.controlplane.reports import report

ACTOR = services.Actor("test")


def beat(name: str, position: int, status: str = "live", ago: float = 0.0) -> None:
    Node.objects.filter(name=name).update(
        status=status, archived_position=position, applied_position=position,
        last_heartbeat=timezone.now() - timedelta(seconds=ago),
    )  # fmt: skip


def test_without_a_live_leader_only_the_most_advanced_node_may_lead(cluster):
    # Leader alpha-1 is silent; the followers reported after the fence of term 2.
    report("alpha-2", 90, fence_seen=2)
    report("alpha-3", 100, fence_seen=2)
    with pytest.raises(services.NotEligible, match="the rules choose alpha-3"):
        switchover.change_leader("alpha", "alpha-2", actor=ACTOR, reason="x", timeout=0.3)
    change = switchover.change_leader("alpha", "alpha-3", actor=ACTOR, reason="x", timeout=0.3)
    assert (change.term, change.new_leader.name) == (2, "alpha-3")


def test_without_a_live_leader_the_last_term_counts_before_the_position(cluster):
    report("alpha-2", 120, fence_seen=2, last_term=0)  # more events, of an older term
    report("alpha-3", 100, fence_seen=2, last_term=1)
    with pytest.raises(services.NotEligible, match="the rules choose alpha-3"):
        switchover.change_leader("alpha", "alpha-2", actor=ACTOR, reason="x", timeout=0.3)
    change = switchover.change_leader("alpha", "alpha-3", actor=ACTOR, reason="x", timeout=0.3)
    assert change.new_leader.name == "alpha-3"


def test_refusals_say_why(cluster):
    beat("alpha-1", 100)  # the leader is live
    beat("alpha-2", 100, ago=60)  # offline
    beat("alpha-3", 100)
    with pytest.raises(services.NotEligible, match="no heartbeat"):
        switchover.change_leader("alpha", "alpha-2", actor=ACTOR, reason="x")
    with pytest.raises(services.NotInCluster):
        switchover.change_leader("alpha", "ghost", actor=ACTOR, reason="x")
    with pytest.raises(services.StaleExpectation, match="not 5"):
        switchover.change_leader("alpha", "alpha-3", actor=ACTOR, reason="x", expected_term=5)
    with pytest.raises(services.StaleExpectation, match="not alpha-2"):
        switchover.change_leader("alpha", "alpha-3", actor=ACTOR, reason="x", expected_leader="alpha-2")
    with pytest.raises(services.NotEligible, match="already the leader"):
        switchover.change_leader("alpha", "alpha-1", actor=ACTOR, reason="x")
    Node.objects.filter(name="alpha-1").update(archived_position=100 + switchover.MAX_LAG_TO_START + 1)
    with pytest.raises(switchover.Lagging, match="events behind"):
        switchover.change_leader("alpha", "alpha-3", actor=ACTOR, reason="x")
    cluster.refresh_from_db()
    assert cluster.term == 1


def test_a_second_switchover_while_one_is_in_flight_is_refused(cluster):
    beat("alpha-1", 5)
    beat("alpha-3", 5)
    cluster.switchover_target = Node.objects.get(name="alpha-2")
    cluster.switchover_deadline = timezone.now() + timedelta(seconds=30)
    cluster.save()
    with pytest.raises(switchover.InFlight, match="in flight"):
        switchover.change_leader("alpha", "alpha-3", actor=ACTOR, reason="x")


def test_switchover_api_maps_refusals_to_409_and_412(cluster, operator_api):
    beat("alpha-1", 5)
    url = "/api/v1/clusters/alpha/switchover/"
    missing = operator_api.post(url, {"node": "alpha-2"}, format="json")
    assert missing.status_code == 400
    assert set(missing.json()) == {"expected_leader", "expected_term"}
    body = {"node": "alpha-2", "expected_leader": "alpha-1", "expected_term": 1}
    offline = operator_api.post(url, body, format="json")
    assert offline.status_code == 409
    assert "start it first" in offline.json()["detail"]
    stale = operator_api.post(url, {**body, "expected_term": 0}, format="json")
    assert stale.status_code == 412


def test_write_quorum_cannot_rise_above_the_live_followers(cluster, operator_api):
    beat("alpha-2", 0)
    url = "/api/v1/clusters/alpha/"
    lowered = operator_api.patch(url, {"write_quorum": 0}, format="json")
    assert lowered.status_code == 200
    assert lowered.json()["write_quorum"] == 0
    raised = operator_api.patch(url, {"write_quorum": 2}, format="json")
    assert raised.status_code == 400
    assert set(raised.json()) == {"write_quorum"}
    assert "only 1 follower(s) are live" in raised.json()["write_quorum"][0]
    beat("alpha-3", 0)
    assert operator_api.patch(url, {"write_quorum": 2}, format="json").status_code == 200
    cluster.refresh_from_db()
    assert (cluster.write_quorum, cluster.term_write_quorum) == (2, 0)  # the term's lowest W


def test_replica_count_cannot_go_below_the_write_quorum(cluster, operator_api):
    url = "/api/v1/clusters/alpha/"
    refused = operator_api.patch(url, {"replica_count": 0}, format="json")
    assert refused.status_code == 400
    assert set(refused.json()) == {"replica_count"}
    assert "Lower the write quorum first" in refused.json()["replica_count"][0]
    both = operator_api.patch(url, {"replica_count": 0, "write_quorum": 0}, format="json")
    assert both.status_code == 200, both.content
    cluster.refresh_from_db()
    assert (cluster.replica_count, cluster.write_quorum) == (0, 0)


def test_supervisor_reports_nodes_whose_state_hash_differs_at_one_position(cluster):
    from controlplane.clusters import supervisor

    for name, state_hash in (("alpha-1", "aa"), ("alpha-2", "aa"), ("alpha-3", "bb")):
        Node.objects.filter(name=name).update(
            status="live", last_heartbeat=timezone.now(), state_hash=state_hash, state_hash_position=50
        )
    status = supervisor.run_cycle(cluster)
    assert "STATE DIVERGENCE: position 50: alpha-1,alpha-2 vs alpha-3" in status
    Node.objects.filter(name="alpha-3").update(state_hash="aa")
    assert "DIVERGENCE" not in supervisor.run_cycle(cluster)
