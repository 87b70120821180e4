"""Planned leadership changes: a switchover that never loses a committed event.

The leader stops taking commands, the target catches up to the leader's last archived
position, and only then is the term bumped and the roles swapped (services.assign_leader).
Handing leadership to a follower that is behind would make the others truncate events
that may already be committed, so a direct assignment is allowed only when there is no
live leader and the target is at least as far as every other node.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction

from controlplane.clusters import services
from controlplane.clusters.models import Cluster, Node, NodeRole, NodeStatus, RoleChange

MAX_LAG_TO_START = 100_000  # events; a follower further behind is refused up front


class InFlight(services.ServiceError):
    code = "switchover_in_flight"


class Lagging(services.NotEligible):
    code = "target_lagging"


@dataclass(frozen=True)
class Eligibility:
    node: str
    eligible: bool
    why: str
    lag: int
    status: str


is_live = services.is_live  # one definition of live, shared with the elections


def replica_count_refusal(cluster: Cluster, wanted: int) -> str | None:
    """Why the replica count (N) cannot be set to `wanted` now, or None if it can.

    N is how many followers hold a copy; it may not go below the write quorum W, which
    counts acks among them (lower W first)."""
    if wanted < cluster.write_quorum:
        return (
            f"Cannot set it to {wanted}: the write quorum is {cluster.write_quorum} and cannot "
            "exceed the replica count. Lower the write quorum first."
        )
    return None


def candidates(cluster: Cluster) -> list[Eligibility]:
    """Per follower, whether a switchover to it can start now, and why (for the admin)."""
    now = services.db_now()
    leader = cluster.leader
    top = max([n.archived_position for n in cluster.nodes.all()], default=0)
    out = []
    for node in cluster.nodes.exclude(role=NodeRole.LEADER).order_by("name"):
        lag = max(0, (leader.archived_position if leader else top) - node.archived_position)
        if node.status == NodeStatus.REMOVED:
            why, ok = "removed", False
        elif node.last_heartbeat is None:
            why, ok = "never started (no heartbeat yet)", False
        elif not is_live(node, cluster, now):
            age = (now - node.last_heartbeat).total_seconds()
            why, ok = f"{node.status}, no heartbeat for {age:.0f} s", False
        elif lag > MAX_LAG_TO_START:
            why, ok = f"lagging {lag} events behind the leader", False
        else:
            why, ok = f"live, {lag} events behind, term {cluster.term}", True
        out.append(Eligibility(node.name, ok, why, lag, node.status))
    return out


def change_leader(
    cluster_name: str,
    target_name: str,
    *,
    actor: services.Actor,
    reason: str,
    expected_term: int | None = None,
    expected_leader: str | None = None,
    timeout: float = 10.0,
) -> RoleChange:
    """Make `target_name` the leader without losing a committed event, or refuse with why."""
    with transaction.atomic():
        cluster = Cluster.objects.select_for_update().get(name=cluster_name)
        now = services.db_now()
        services.check_expectations(cluster, expected_term, expected_leader)
        if cluster.switchover_target_id and cluster.switchover_deadline and cluster.switchover_deadline > now:
            raise InFlight(
                f"a switchover of {cluster.name} to {cluster.switchover_target} is in flight; "
                "wait for it to finish"
            )
        target = Node.objects.filter(name=target_name, cluster=cluster).first()
        if target is None:
            raise services.NotInCluster(f"node {target_name} is not a node of cluster {cluster.name}")
        if target.role == NodeRole.LEADER:
            raise services.NotEligible(f"{target.name} is already the leader of {cluster.name}")
        leader = cluster.leader
        no_live_leader = leader is None or not is_live(leader, cluster, now)
        if not no_live_leader and not is_live(target, cluster, now):
            raise services.NotEligible(
                f"{target.name} is {target.get_status_display().lower()} (no heartbeat for "
                f"{cluster.failover_timeout:.1f} s): start it first"
            )
        if no_live_leader:
            term = cluster.term
        else:
            _start_switchover(cluster, leader, target, now, timeout)
            term = cluster.term
    if no_live_leader:
        return _elect_without_live_leader(cluster_name, target_name, term, actor, reason, timeout)
    started = now
    try:
        final = _wait_for_catch_up(cluster.pk, leader.pk, target.pk, started, timeout)
        return services.assign_leader(
            cluster_name,
            target_name,
            actor=actor,
            reason=f"{reason} (switchover at position {final})",
            expected_term=term,
        )
    finally:
        Cluster.objects.filter(pk=cluster.pk, switchover_target=target).update(
            switchover_target=None, switchover_deadline=None
        )


def _start_switchover(cluster: Cluster, leader: Node, target: Node, now, timeout: float) -> None:
    """Mark the switchover in flight (the cluster row is locked): the leader pauses."""
    if target.resyncing:
        raise services.NotEligible(f"{target.name} is a new empty replica (its archive was reset); let it catch up")
    lag = leader.archived_position - target.archived_position
    if lag > MAX_LAG_TO_START:
        raise Lagging(f"{target.name} is {lag} events behind {leader.name}; let it catch up first")
    cluster.switchover_target = target
    cluster.switchover_deadline = now + timedelta(seconds=timeout)
    cluster.save(update_fields=["switchover_target", "switchover_deadline"])


def _elect_without_live_leader(
    cluster_name: str, target_name: str, term: int, actor: services.Actor, reason: str, timeout: float
) -> RoleChange:
    """With no live leader, an operator's pick goes through the election rules: the
    term of a silent leader is ended first (fence), then the target is elected only if
    the rules choose it from the nodes' fresh reports. Refused with the reason otherwise;
    `force` is the audited way around."""
    cluster = Cluster.objects.get(name=cluster_name)
    if cluster.leader_id is not None or cluster.term == 0:
        services.end_term(cluster, actor=actor, reason=f"{reason}: leader not live", expected_term=term)
    deadline = time.monotonic() + timeout
    while True:
        change, decision = services.elect(cluster_name, actor=actor, only=target_name)
        if change is not None:
            RoleChange.objects.filter(pk=change.pk).update(reason=f"{reason}: {change.reason}"[:500])
            change.refresh_from_db()
            return change
        if time.monotonic() > deadline:
            raise services.NotEligible(
                f"{target_name} cannot be elected safely now: {decision.reason}. "
                "An operator may force it (POST .../force-leader/), accepting the loss it names."
            )
        time.sleep(0.1)


def _wait_for_catch_up(cluster_id: int, leader_id: int, target_id: int, started, timeout: float) -> int:
    """Until the paused leader reports its final position and the target has archived it."""
    deadline = time.monotonic() + timeout
    while True:
        leader = Node.objects.get(pk=leader_id)
        target = Node.objects.get(pk=target_id)
        paused = leader.status == NodeStatus.DRAINING and leader.last_heartbeat and leader.last_heartbeat > started
        if paused and target.last_heartbeat > leader.last_heartbeat and target.archived_position >= leader.archived_position:
            return leader.archived_position
        if time.monotonic() > deadline:
            if not paused:
                raise services.NotEligible(
                    f"leader {leader.name} did not pause within {timeout:.0f} s; switchover abandoned"
                )
            raise Lagging(
                f"{target.name} reached {target.archived_position} of {leader.archived_position} "
                f"within {timeout:.0f} s; switchover abandoned, {leader.name} stays leader"
            )
        time.sleep(0.05)
