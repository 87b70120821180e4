"""The control plane's write paths. Views, admin actions and commands all call these."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from django.db import connection, transaction
from django.utils import timezone

from archive.fence import set_fence
from controlplane.clusters import streams
from controlplane.clusters.models import (
    Cluster,
    ClusterStatus,
    Node,
    NodeRole,
    NodeStatus,
    RoleChange,
)


class ServiceError(Exception):
    """An operator request that cannot be carried out; the message says why and what to do."""

    code = "invalid"


class NotInCluster(ServiceError):
    code = "not_in_cluster"


class NotEligible(ServiceError):
    code = "not_eligible"


class StaleExpectation(ServiceError):
    """The caller's view of the cluster (term or leader) is out of date."""

    code = "stale"


@dataclass(frozen=True)
class Actor:
    """Who asked for a change: a user, or a named system component such as the supervisor."""

    name: str
    user_id: int | None = None

    @classmethod
    def of_user(cls, user) -> Actor:
        return cls(name=user.get_username(), user_id=user.pk)


SUPERVISOR = Actor("supervisor")


def assign_leader(
    cluster: Cluster | str,
    node: Node | str,
    *,
    actor: Actor,
    reason: str,
    expected_term: int | None = None,
) -> RoleChange:
    """Make `node` the leader of `cluster` under a new term; everyone else follows.

    One transaction with the cluster row locked (SELECT ... FOR UPDATE): two concurrent
    assignments serialise on that lock, so each bumps the term exactly once and a term
    never has two leaders. `expected_term`, when given, makes this a compare-and-set.
    """
    cluster_name = cluster.name if isinstance(cluster, Cluster) else cluster
    node_name = node.name if isinstance(node, Node) else node
    with transaction.atomic():
        locked = Cluster.objects.select_for_update().get(name=cluster_name)
        check_expectations(locked, expected_term)
        target = Node.objects.filter(name=node_name).first()
        if target is None or target.cluster_id != locked.pk:
            raise NotInCluster(f"node {node_name} is not a node of cluster {locked.name}")
        if target.status == NodeStatus.REMOVED:
            raise NotEligible(f"node {node_name} has been removed from cluster {locked.name}")
        old_leader_id = locked.leader_id
        locked.term += 1
        # The fence goes up before the new role is visible (the commit below announces
        # it): from here on a publish by the old leader's term is refused by Redis. If
        # the commit then fails, the fence is merely ahead of the table, which is safe.
        set_fence(streams.connection(), locked.name, locked.term)
        locked.leader = target
        locked.status = ClusterStatus.ACTIVE
        # Demote first: the partial unique index allows one leader per cluster at a time.
        Node.objects.filter(cluster=locked).exclude(pk=target.pk).update(role=NodeRole.FOLLOWER)
        Node.objects.filter(pk=target.pk).update(role=NodeRole.LEADER)
        locked.save(update_fields=["term", "leader", "status"])
        return RoleChange.objects.create(
            cluster=locked,
            term=locked.term,
            old_leader_id=old_leader_id,
            new_leader=target,
            reason=reason,
            actor=actor.name,
            user_id=actor.user_id,
        )


def check_expectations(
    cluster: Cluster, expected_term: int | None, expected_leader: str | None = None
) -> None:
    """Compare-and-set guard: refuse when the caller's view of the cluster is stale."""
    if expected_term is not None and cluster.term != expected_term:
        raise StaleExpectation(
            f"cluster {cluster.name} is at term {cluster.term}, not {expected_term}: "
            "reload and try again"
        )
    current = cluster.leader.name if cluster.leader else None
    if expected_leader is not None and current != expected_leader:
        raise StaleExpectation(
            f"the leader of {cluster.name} is {current or 'nobody'}, not {expected_leader}: "
            "reload and try again"
        )


def new_node_secret() -> str:
    return secrets.token_urlsafe(24)


def register_node(
    *, name: str, cluster: Cluster | str, archive_location: str, secret: str | None = None
) -> tuple[Node, str]:
    """Register a node with its archive location; returns it and its secret (shown once)."""
    secret = secret or new_node_secret()
    with transaction.atomic():
        cluster_obj = cluster if isinstance(cluster, Cluster) else Cluster.objects.get(name=cluster)
        node = Node.objects.create(
            name=name,
            cluster=cluster_obj,
            archive_location=archive_location,
            credentials_hash=hash_node_secret(secret),
        )
    return node, secret


def hash_node_secret(secret: str) -> str:
    # Node secrets are 192 random bits, so a slow password hash buys nothing and would
    # cost ~0.3 s per heartbeat; a plain SHA-256 is not brute-forceable here.
    return "sha256$" + hashlib.sha256(secret.encode()).hexdigest()


def check_node_credentials(node: Node, secret: str) -> bool:
    return bool(node.credentials_hash) and hmac.compare_digest(
        node.credentials_hash, hash_node_secret(secret)
    )


@dataclass(frozen=True)
class HeartbeatReport:
    """What a node says about itself every heartbeat interval."""

    status: str
    status_message: str = ""
    term: int = 0
    archived_position: int = 0
    applied_position: int = 0
    state_hash: str = ""
    state_hash_position: int = 0
    software_version: str = ""


def record_heartbeat(node_name: str, report: HeartbeatReport) -> Node:
    """Store a node's heartbeat and return its row, whose role and cluster answer it.

    A plain UPDATE of the node's own row: it takes no cluster lock, so heartbeats never
    wait behind an election. A removed node is refused rather than revived.
    """
    with transaction.atomic():
        # A heartbeat lost in a database crash is harmless (the next one repeats it), so
        # it does not wait for the WAL flush that the nodes' archives on the same server need.
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
        return _store_heartbeat(node_name, report)


def _store_heartbeat(node_name: str, report: HeartbeatReport) -> Node:
    updated = (
        Node.objects.filter(name=node_name)
        .exclude(status=NodeStatus.REMOVED)
        .update(
            status=report.status,
            status_message=report.status_message[:500],
            last_heartbeat=timezone.now(),
            archived_position=report.archived_position,
            applied_position=report.applied_position,
            state_hash=report.state_hash,
            state_hash_position=report.state_hash_position,
            software_version=report.software_version[:64],
        )
    )
    if updated != 1:
        raise NotEligible(f"node {node_name} has been removed; it must not run")
    return Node.objects.select_related(
        "cluster", "cluster__leader", "cluster__switchover_target"
    ).get(name=node_name)


def restore_fence(cluster: Cluster) -> int | None:
    """Put the cluster's fence back at its term if Redis lost it (restart, flush).

    Safe at any time: the fence only moves up, and the table's term is the truth. Until
    it is back, every publish is refused, so the nodes' heartbeats call this.
    """
    if cluster.term < 1:
        return None
    return set_fence(streams.connection(), cluster.name, cluster.term)
