"""Operator actions that are not term changes: pause/resume, N and W, node lifecycle, snapshots.

Each is one function shared by the admin, the API and `manage.py cluster`, and each writes
an OperatorAction audit row in the same transaction as the change it records (a term
change is audited by its RoleChange instead). The write itself goes through
controlplane.clusters.services where a service exists (write quorum, register, remove);
these functions add the audit around it, under the cluster's row lock.
"""

from __future__ import annotations

import logging

from django.db import transaction

from controlplane.clusters import services, streams
from controlplane.clusters.models import (
    Cluster,
    Node,
    NodeStatus,
    OperatorAction,
    OperatorActionKind,
)
from wire import rpc

log = logging.getLogger("controlplane.maintenance")


def audit(
    cluster: Cluster,
    action: str,
    *,
    actor: services.Actor,
    detail: str = "",
    reason: str = "",
    node: Node | None = None,
) -> OperatorAction:
    """One audit row, at the cluster's term as the caller holds it (inside its transaction)."""
    return OperatorAction.objects.create(
        cluster=cluster,
        node=node,
        action=action,
        term=cluster.term,
        detail=detail[:500],
        reason=reason[:500],
        actor=actor.name,
        user_id=actor.user_id,
    )


def set_paused(cluster: Cluster | str, paused: bool, *, actor: services.Actor, reason: str = "") -> Cluster:
    """Pause (maintenance mode) or resume automatic failover.

    A paused cluster is still watched, its silent nodes marked offline, but the supervisor
    neither ends a term nor elects (supervisor.run_cycle reads the flag under no lock: a
    cycle that read it just before a pause may still end one term, as Patroni's may).
    Compare-and-set under the cluster's row lock: pausing a paused cluster changes
    nothing and writes no audit row, so two operators pausing at once give one row.
    """
    with transaction.atomic():
        locked = Cluster.objects.select_for_update().get(name=services.cluster_name_of(cluster))
        if locked.paused == paused:
            return locked
        now = services.db_now()
        locked.paused = paused
        locked.paused_reason = reason[:500] if paused else ""
        locked.paused_at = now if paused else None
        locked.save(update_fields=["paused", "paused_reason", "paused_at"])
        audit(
            locked,
            OperatorActionKind.PAUSE if paused else OperatorActionKind.RESUME,
            actor=actor,
            reason=reason,
            detail=(
                "automatic failover off: the supervisor watches but does not elect"
                if paused
                else "automatic failover on again"
            ),
        )
        log.warning(
            "%s: %s by %s in term %d%s",
            locked.name, "paused" if paused else "resumed", actor.name, locked.term,
            f": {reason}" if reason else "",
            extra={"cluster": locked.name, "term": locked.term},
        )  # fmt: skip
        return locked


def set_write_quorum(
    cluster: Cluster | str, write_quorum: int, *, actor: services.Actor, reason: str = ""
) -> Cluster:
    """services.set_write_quorum, audited when W changes."""
    with transaction.atomic():
        before = Cluster.objects.select_for_update().get(name=services.cluster_name_of(cluster)).write_quorum
        changed = services.set_write_quorum(services.cluster_name_of(cluster), write_quorum, actor=actor)
        if before != write_quorum:
            audit(
                changed,
                OperatorActionKind.WRITE_QUORUM,
                actor=actor,
                reason=reason,
                detail=f"write quorum {before} -> {write_quorum}: {changed.tolerance}",
            )
        return changed


def record_replica_count(cluster: Cluster, before: int, *, actor: services.Actor, reason: str = "") -> None:
    """Audit a replica-count change the caller has just saved (inside its transaction)."""
    if cluster.replica_count != before:
        audit(
            cluster,
            OperatorActionKind.REPLICA_COUNT,
            actor=actor,
            reason=reason,
            detail=f"replicas {before} -> {cluster.replica_count}: {cluster.tolerance}",
        )


def register_node(
    *, name: str, cluster: Cluster | str, archive_location: str, actor: services.Actor
) -> tuple[Node, str]:
    """services.register_node, audited; returns the node and its secret (show it once)."""
    with transaction.atomic():
        node, secret = services.register_node(name=name, cluster=cluster, archive_location=archive_location)
        audit(node.cluster, OperatorActionKind.REGISTER_NODE, actor=actor, node=node, detail=f"registered {name}")
    return node, secret


def remove_node(node: Node | str, *, actor: services.Actor, reason: str = "") -> Node:
    """services.remove_node, audited once: removing a removed node writes nothing."""
    name = node.name if isinstance(node, Node) else node
    with transaction.atomic():
        # The cluster's row lock first (services.remove_node takes it too, in this same
        # transaction): two operators removing the node at once see it one after the
        # other, and only the first writes an audit row.
        cluster_id = Node.objects.values_list("cluster_id", flat=True).get(name=name)
        Cluster.objects.select_for_update().get(pk=cluster_id)
        already = Node.objects.filter(name=name, status=NodeStatus.REMOVED).exists()
        removed = services.remove_node(name, actor=actor)
        if not already:
            cluster = Cluster.objects.get(pk=removed.cluster_id)
            audit(
                cluster,
                OperatorActionKind.REMOVE_NODE,
                actor=actor,
                node=removed,
                reason=reason,
                detail=f"removed {name}: its heartbeats are refused and its acks no longer count",
            )
    return removed


def request_snapshot(node: Node | str, *, actor: services.Actor) -> rpc.Pending:
    """Ask a node to snapshot its state between two batches (a request on its queue,
    wire/rpc.py, sent after the audit row commits). Returns the pending request."""
    name = node.name if isinstance(node, Node) else node
    with transaction.atomic():
        target = Node.objects.select_related("cluster").get(name=name)
        if target.status == NodeStatus.REMOVED:
            raise services.NotEligible(f"node {name} has been removed")
        audit(target.cluster, OperatorActionKind.SNAPSHOT, actor=actor, node=target, detail=f"snapshot of {name}")
    return rpc.send(streams.tasks(), streams.connection(), target.cluster.name, name, "take_snapshot")


def rotate_node_secret(name: str, *, actor: services.Actor) -> str:
    """A new secret for the node, returned once. The old one keeps working until the node
    first beats with the new one (it re-reads NODE_SECRET_FILE every heartbeat): no restart,
    no moment without a valid secret. Audited."""
    secret = services.new_node_secret()
    with transaction.atomic():
        node = Node.objects.select_for_update().select_related("cluster").get(name=name)
        node.next_credentials_hash = services.hash_node_secret(secret)
        node.save(update_fields=["next_credentials_hash"])
        audit(node.cluster, OperatorActionKind.ROTATE_SECRET, actor=actor, node=node,
              detail=f"new secret for {name}; the old one works until the node uses the new one")  # fmt: skip
    return secret
