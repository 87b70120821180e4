"""The supervisor: detects a dead leader by its heartbeat age, ends its term, elects, marks dead nodes.

One `run_cycle()` per cluster returns what it did, or why it waits, as a sentence (kept
in the cluster's status message for the admin, the API and the dashboard). An election
takes two steps (DESIGN §4): `services.end_term` commits a new term with no leader and
then moves the fence, so the old leader can no longer publish, deliver or count acks;
`services.elect` then chooses by the election restriction and quorum from the reports
the nodes made after reading the new fence (nodes.protocol.election). Both are
compare-and-sets under the cluster's row lock, so two supervisors at once are safe: the
second one's step fails with StaleExpectation and does nothing.
"""

from __future__ import annotations

import logging

import redis
from django.db.models import Q

from controlplane.clusters import services
from controlplane.clusters.models import Cluster, ClusterStatus, Node, NodeStatus

log = logging.getLogger("controlplane.supervisor")

STARTUP_GRACE = 3  # failover timeouts a newly made leader has to send its first report


def mark_offline(cluster: Cluster, now) -> list[str]:
    cutoff = services.heard_cutoff(cluster, now)  # not heard_recently: the nodes to mark
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
    now = services.db_now()
    try:
        services.restore_fence(cluster)
        services.reconcile_fence(cluster)
    except redis.RedisError as error:
        return f"{cluster.name}: Redis unreachable ({error}); no election without a fence"
    offline = mark_offline(cluster, now)
    nodes = list(cluster.nodes.exclude(status=NodeStatus.REMOVED))
    done = f"{cluster.name}: marked {', '.join(offline)} offline; " if offline else f"{cluster.name}: "
    diverged = divergent_nodes(nodes)
    if diverged:
        log.error("%s: STATE DIVERGENCE at the same position: %s", cluster.name, diverged)
        done += f"STATE DIVERGENCE: {diverged}; "

    leader = next((n for n in nodes if n.pk == cluster.leader_id), None)
    if cluster.leader_id is not None:
        # Silent since its last heartbeat, or since it was made leader if later: a
        # leader just assigned gets a whole failover timeout to report.
        began = _term_began(cluster)
        since = max(filter(None, [leader.last_heartbeat if leader else None, began]), default=None)
        # A leader that has not reported since it was made leader cannot have learned it
        # leads, so it took no command: it gets a start-up grace (a process starting)
        # before its term is ended.
        started = leader is not None and leader.last_heartbeat is not None and (began is None or leader.last_heartbeat >= began)
        grace = cluster.failover_timeout * (1 if started else STARTUP_GRACE)
        heard = leader is not None and since is not None and (now - since).total_seconds() <= grace
        # Liveness is progress: a leader that reports but whose loop is stuck (an append
        # blocked on a lock, a recovery that keeps failing) is failed over all the same.
        stuck = leader is not None and leader.stalled_for > cluster.failover_timeout
        if heard and not stuck:
            return done + _leader_is_live(cluster, leader, nodes, now)
        age = (now - leader.last_heartbeat).total_seconds() if leader and leader.last_heartbeat else None
        if stuck and heard:
            why = f"leader {leader.name} reports but its loop made no progress for {leader.stalled_for:.1f} s"
        elif age is not None:
            why = f"leader {leader.name if leader else '?'} silent for {age:.1f} s"
        else:
            why = "leader never reported"
        if cluster.paused:
            return done + _paused(cluster, why)
        try:
            change = services.end_term(cluster, actor=services.SUPERVISOR, reason=why, expected_term=cluster.term)
        except services.StaleExpectation:
            return done + "another supervisor changed the term first; nothing to do"
        log.warning("%s: %s: ended term %d, electing in term %d", cluster.name, why, cluster.term, change.term)
        return done + f"{why}: ended its term; electing in term {change.term} once the nodes report"

    if cluster.paused:
        return done + _paused(cluster, f"no leader in term {cluster.term}")
    if cluster.term == 0:
        try:
            change = services.end_term(
                cluster, actor=services.SUPERVISOR, reason="first election", expected_term=0
            )
        except services.StaleExpectation:
            return done + "another supervisor changed the term first; nothing to do"
        return done + f"first election: electing in term {change.term} once the nodes report"
    try:
        change, decision = services.elect(cluster, actor=services.SUPERVISOR, expected_term=cluster.term)
    except services.StaleExpectation:
        return done + "another supervisor changed the term first; nothing to do"
    if change is None:
        return done + f"no leader in term {cluster.term}: {decision.reason}"
    return done + f"elected {decision.winner} in term {change.term}: {decision.reason}"


def _paused(cluster: Cluster, why: str) -> str:
    """Maintenance mode (Patroni's pause): say what would have been done, and do nothing."""
    message = f"paused: {why}; no automatic failover until the cluster is resumed"
    Cluster.objects.filter(pk=cluster.pk).exclude(status_message=message).update(status_message=message)
    return message


def _term_began(cluster: Cluster):
    return cluster.role_changes.filter(term=cluster.term).values_list("created_at", flat=True).first()


def _leader_is_live(cluster: Cluster, leader: Node, nodes: list[Node], now) -> str:
    live = sum(
        1
        for n in nodes
        if n.pk != leader.pk and n.status == NodeStatus.LIVE and services.heard_recently(n, cluster, now)
    )
    if live < cluster.write_quorum:
        status = ClusterStatus.DEGRADED
        message = (
            f"leader {leader.name} is live in term {cluster.term}, but only {live} follower(s) are live: "
            f"commits need {cluster.write_quorum}"
        )
    elif live < cluster.replica_count:
        status = ClusterStatus.DEGRADED
        message = f"leader {leader.name} is live in term {cluster.term}; {live} of {cluster.replica_count} followers live"
    else:
        status, message = ClusterStatus.ACTIVE, ""
    Cluster.objects.filter(pk=cluster.pk).exclude(status=status, status_message=message).update(
        status=status, status_message=message
    )
    return f"no action: leader {leader.name} is live in term {cluster.term}" + (f" ({message})" if message else "")


def run_all() -> list[str]:
    statuses = []
    for cluster in Cluster.objects.all():
        try:
            statuses.append(run_cycle(cluster))
        except Exception as error:  # one broken cluster must not stop the others
            log.exception("supervisor cycle failed for %s", cluster.name)
            statuses.append(f"{cluster.name}: cycle failed: {error}")
    from controlplane import health

    health.record_supervisor_cycle()  # for /readyz: "the supervisor ran recently"
    return statuses
