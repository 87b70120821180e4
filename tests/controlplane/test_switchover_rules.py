"""Switchover and replica-count rules that need no running node."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from controlplane.clusters import services, switchover
from controlplane.clusters.models import Node

ACTOR = services.Actor("test")


def beat(name: str, position: int, status: str = "live", ago: float = 0.0) -> None:
    Node.objects.filter(name=name).update(
        status=status, archived_position=position, applied_position=position,
        last_heartbeat=timezone.now() - timedelta(seconds=ago),
    )  # fmt: skip


def test_without_a_live_leader_only_the_most_advanced_node_may_lead(cluster):
    beat("alpha-2", 90)
    beat("alpha-3", 100)
    with pytest.raises(switchover.Lagging, match="alpha-3 has 100"):
        switchover.change_leader("alpha", "alpha-2", actor=ACTOR, reason="x")
    change = switchover.change_leader("alpha", "alpha-3", actor=ACTOR, reason="x")
    assert (change.term, change.new_leader.name) == (2, "alpha-3")


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


def test_replica_count_cannot_rise_above_the_live_followers(cluster, operator_api):
    beat("alpha-2", 0)
    url = "/api/v1/clusters/alpha/"
    lowered = operator_api.patch(url, {"replica_count": 1}, format="json")
    assert lowered.status_code == 200
    raised = operator_api.patch(url, {"replica_count": 2}, format="json")
    assert raised.status_code == 400
    assert "only 1 follower(s) are live" in raised.json()["replica_count"][0]
    beat("alpha-3", 0)
    assert operator_api.patch(url, {"replica_count": 2}, format="json").status_code == 200


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
