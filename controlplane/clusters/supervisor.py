"""The supervisor: detects a dead leader by its heartbeat age, elects a follower, marks dead nodes.

One `run_cycle()` per cluster returns what it did as a sentence. It is safe with two
supervisors at once: offline marking is a conditional UPDATE, and an election is a
compare-and-set on the term under the cluster's row lock (services.assign_leader), so
the second supervisor's election fails with StaleExpectation and does nothing.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import redis
from django.db.models import Q
from django.utils import timezone

from controlplane.clusters import services
from controlplane.clusters.election import Candidate, choose_leader, is_silent
from controlplane.clusters.models import Cluster, ClusterStatus, Node, NodeRole, NodeStatus

log = logging.getLogger("controlplane.supervisor")


def candidate(node: Node) -> Candidate:
    return Candidate(
        name=node.name,
        role=node.role,
        status=node.status,
        last_heartbeat=node.last_heartbeat,
        archived_position=node.archived_position,
        applied_position=node.applied_position,
    )


def mark_offline(cluster: Cluster, now) -> list[str]:
    cutoff = now - timedelta(seconds=cluster.failover_timeout)
    silent = Node.objects.filter(
        cluster=cluster,
        status__in=[NodeStatus.LIVE, NodeStatus.STARTING, NodeStatus.DRAINING],
    ).filter(Q(last_heartbeat__lt=cutoff) | Q(last_heartbeat__isnull=True))
    names = list(silent.values_list("name", flat=True))
    # Conditional on the heartbeat still being old: a node that reported meanwhile stays live.
    if names:
        silent.update(status=NodeStatus.OFFLINE)
    return names


def divergent_nodes(nodes: list[Node]) -> str:
    """Nodes that report different state hashes at the same position (determinism broken)."""
    by_position: dict[int, dict[str, list[str]]] = {}
    for node in nodes:
        if node.state_hash and node.state_hash_position:
            by_position.setdefault(node.state_hash_position, {}).setdefault(node.state_hash, []).append(node.name)
    problems = [
        f"position {position}: " + " vs ".join(",".join(names) for names in hashes.values())
        for position, hashes in sorted(by_position.items())
        if len(hashes) > 1
    ]
    return "; ".join(problems)


def run_cycle(cluster: Cluster) -> str:
    now = timezone.now()
    try:
        services.restore_fence(cluster)
    except redis.RedisError as error:
        return f"{cluster.name}: Redis unreachable ({error}); no election without a fence"
    offline = mark_offline(cluster, now)
    nodes = list(cluster.nodes.exclude(status=NodeStatus.REMOVED))
    leader = next((n for n in nodes if n.role == NodeRole.LEADER), None)
    followers = [candidate(n) for n in nodes if n.role != NodeRole.LEADER]
    live_followers = [f for f in followers if f.status == "live" and not is_silent(f, now, cluster.failover_timeout)]
    done = f"{cluster.name}: marked {', '.join(offline)} offline; " if offline else f"{cluster.name}: "

    diverged = divergent_nodes(nodes)
    if diverged:
        log.error("%s: STATE DIVERGENCE at the same position: %s", cluster.name, diverged)
        done += f"STATE DIVERGENCE: {diverged}; "
    leader_silent = leader is None or is_silent(candidate(leader), now, cluster.failover_timeout)
    if not leader_silent:
        status = ClusterStatus.ACTIVE if len(live_followers) >= cluster.replica_count else ClusterStatus.DEGRADED
        Cluster.objects.filter(pk=cluster.pk).exclude(status=status).update(status=status)
        return done + f"no action: leader {leader.name} is live in term {cluster.term}"

    winner, why = choose_leader(
        followers, candidate(leader) if leader else None, now, cluster.failover_timeout
    )
    if winner is None:
        Cluster.objects.filter(pk=cluster.pk).update(status=ClusterStatus.LEADERLESS)
        return done + f"leader {leader.name if leader else '-'} is silent; {why}"
    age = (now - leader.last_heartbeat).total_seconds() if leader and leader.last_heartbeat else None
    reason = (
        f"failover: leader {leader.name} silent for {age:.1f} s; {why}"
        if leader and age is not None
        else f"no leader; {why}"
    )
    try:
        change = services.assign_leader(
            cluster, winner.name, actor=services.SUPERVISOR, reason=reason, expected_term=cluster.term
        )
    except services.StaleExpectation:
        return done + "another supervisor changed the term first; nothing to do"
    log.warning("%s: %s (term %d)", cluster.name, reason, change.term)
    return done + f"elected {winner.name} in term {change.term}: {reason}"


def run_all() -> list[str]:
    statuses = []
    for cluster in Cluster.objects.all():
        try:
            statuses.append(run_cycle(cluster))
        except Exception as error:  # one broken cluster must not stop the others
            log.exception("supervisor cycle failed for %s", cluster.name)
            statuses.append(f"{cluster.name}: cycle failed: {error}")
    return statuses
