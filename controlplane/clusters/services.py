"""The control plane's write paths. Views, admin actions and commands all call these."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass, field
from datetime import timedelta

import redis
from django.db import connection, transaction
from django.db.models import F
from django.db.models.functions import Least, Now

from archive.fence import lower_fence, set_fence
from controlplane.clusters import streams, trading
from controlplane.clusters.models import (
    Cluster,
    ClusterStatus,
    Node,
    NodeRole,
    NodeStatus,
    RoleChange,
)
from nodes.protocol import election, identity, retention

log = logging.getLogger("controlplane.services")


def db_now():
    """The control plane's one clock (DESIGN §4 "Liveness is progress"): the database's.

    Heartbeat stamps are written with it and every age is judged with it, so control
    planes on machines whose clocks disagree (or a clock step on one of them) never
    compare two clocks."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement_timestamp()")
        return cursor.fetchone()[0]


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
    Only for a planned change (a live leader that paused and a target that caught up,
    or a cluster's first leader): with the leader gone, `end_term` + `elect` choose.
    """
    cluster_name = cluster_name_of(cluster)
    node_name = node.name if isinstance(node, Node) else node
    with transaction.atomic():
        locked = Cluster.objects.select_for_update().get(name=cluster_name)
        check_expectations(locked, expected_term)
        target = Node.objects.filter(name=node_name).first()
        if target is None or target.cluster_id != locked.pk:
            raise NotInCluster(f"node {node_name} is not a node of cluster {locked.name}")
        if target.status == NodeStatus.REMOVED:
            raise NotEligible(f"node {node_name} has been removed from cluster {locked.name}")
        if target.resyncing:
            raise NotEligible(
                f"node {node_name} is a new empty replica (its archive was reset); it may lead "
                f"once it has caught up"
            )
        old_leader_id = locked.leader_id
        locked.term += 1
        change = RoleChange.objects.create(
            cluster=locked,
            term=locked.term,
            old_leader_id=old_leader_id,
            new_leader=target,
            reason=reason,
            actor=actor.name,
            user_id=actor.user_id,
        )
        _install_leader(locked, target)
        raise_fence_after_commit(locked.name, locked.term)
        return change


def _install_leader(locked: Cluster, target: Node) -> None:
    """Roles and the start of a term with a leader (the cluster row is locked)."""
    locked.leader = target
    locked.last_leader = target
    locked.status = ClusterStatus.ACTIVE
    locked.status_message = ""
    # Demote first: the partial unique index allows one leader per cluster at a time.
    Node.objects.filter(cluster=locked).exclude(pk=target.pk).update(role=NodeRole.FOLLOWER)
    Node.objects.filter(pk=target.pk).update(role=NodeRole.LEADER)
    # The election window (lowest W, removed nodes still counted) stays as it is until
    # this leader commits a position of its own term (`_settle`): until then, earlier
    # commits are held only by the quorums they were made with.
    locked.save(update_fields=["term", "leader", "last_leader", "status", "status_message"])


def raise_fence_after_commit(cluster_name: str, term: int) -> None:
    """Move the fence to `term` once the transaction that set it in the database commits.

    The database goes first (DESIGN §4): the fence is never above the database's term,
    and a process that dies between the two leaves a state the next heartbeat or
    supervisor cycle finishes (restore_fence)."""

    def raise_fence() -> None:
        try:
            set_fence(streams.fence_connection(), cluster_name, term)
        except redis.RedisError as error:
            log.warning("%s: could not raise the fence to %d now (%s); the next cycle will", cluster_name, term, error)

    transaction.on_commit(raise_fence)


def end_term(cluster: Cluster | str, *, actor: Actor, reason: str, expected_term: int | None = None) -> RoleChange:
    """End the current term with no leader yet: the first step of every election.

    Commits term + 1 with no leader, then raises the fence: from then on the old leader
    can neither publish nor deliver a result nor count an ack, and the reports the nodes
    send after reading the new fence are the election's votes (`elect`)."""
    cluster_name = cluster_name_of(cluster)
    with transaction.atomic():
        locked = Cluster.objects.select_for_update().get(name=cluster_name)
        check_expectations(locked, expected_term)
        old_leader_id = locked.leader_id
        locked.term += 1
        locked.leader = None
        if old_leader_id is not None:
            locked.last_leader_id = old_leader_id
        locked.status = ClusterStatus.LEADERLESS
        locked.status_message = f"term {locked.term} fenced: {reason}; waiting for the nodes to report"
        Node.objects.filter(cluster=locked, role=NodeRole.LEADER).update(role=NodeRole.FOLLOWER)
        locked.save(update_fields=["term", "leader", "last_leader", "status", "status_message"])
        change = RoleChange.objects.create(
            cluster=locked,
            term=locked.term,
            old_leader_id=old_leader_id,
            new_leader=None,
            reason=f"term ended: {reason}",
            actor=actor.name,
            user_id=actor.user_id,
        )
        raise_fence_after_commit(locked.name, locked.term)
        return change


def election_of(cluster: Cluster, now=None) -> tuple[election.Election, list[election.Report]]:
    """The election of the cluster's current (fenced, leaderless) term, from the node rows."""
    now = now or db_now()
    nodes = list(cluster.nodes.all())
    followers = tuple(
        sorted(
            n.name
            for n in nodes
            if n.pk != cluster.last_leader_id
            and (n.status != NodeStatus.REMOVED or n.removed_in_term is not None)
        )
    )
    reports = [_report(n, cluster, now) for n in nodes if n.status != NodeStatus.REMOVED]
    last_leader = next((n.name for n in nodes if n.pk == cluster.last_leader_id), None)
    return (
        election.Election(
            term=cluster.term,
            followers=followers,
            write_quorum=min(cluster.term_write_quorum, cluster.write_quorum),
            old_leader=last_leader,
        ),
        reports,
    )


def _report(node: Node, cluster: Cluster, now) -> election.Report:
    if node.status == NodeStatus.REGISTERED and node.last_heartbeat is None:
        # Never ran: it never acknowledged anything, so "I hold nothing" is its true and
        # current vote (any commit set lies among the other followers).
        return election.Report(node.name, cluster.term, 0, 0, live=False, voter=True)
    return election.Report(
        name=node.name,
        fence_seen=node.fence_seen,
        last_term=node.last_term,
        position=node.archived_position,
        live=_reports_live(node, cluster, now),
        voter=bool(node.archive_id) and not node.resyncing,
    )


def heard_cutoff(cluster: Cluster, now):
    """The oldest heartbeat that still counts as recent: one failover timeout ago."""
    return now - timedelta(seconds=cluster.failover_timeout)


def heard_recently(node: Node, cluster: Cluster, now) -> bool:
    """Its last heartbeat is within the failover timeout, on the database's clock."""
    return node.last_heartbeat is not None and node.last_heartbeat >= heard_cutoff(cluster, now)


def is_live(node: Node, cluster: Cluster, now=None) -> bool:
    """Reporting now and serving (live, or a leader draining for a switchover): the one
    definition of live, shared by elections, switchovers, retention, quorum checks and
    metrics (the supervisor marks offline the nodes whose heartbeat is before
    ``heard_cutoff``)."""
    return node.status in (NodeStatus.LIVE, NodeStatus.DRAINING) and heard_recently(node, cluster, now or db_now())


def retention_floor(cluster: Cluster, nodes: list[Node], now) -> int | None:
    """The lowest position a live member of the cluster holds (nodes.protocol.retention):
    every node keeps the events after it. Members down or starting do not hold it back;
    one that comes back behind the nodes' retention installs a snapshot."""
    return retention.member_floor(
        retention.Member(n.name, n.archived_position, live=is_live(n, cluster, now), removed=n.status == NodeStatus.REMOVED)
        for n in nodes
    )


def _reports_live(node: Node, cluster: Cluster, now) -> bool:
    """May lead: live and not draining, and its loop making progress (a stuck node still votes)."""
    return (
        node.status == NodeStatus.LIVE
        and is_live(node, cluster, now)
        and node.stalled_for <= cluster.failover_timeout
    )


def elect(
    cluster: Cluster | str,
    *,
    actor: Actor,
    force: str | None = None,
    only: str | None = None,
    expected_term: int | None = None,
) -> tuple[RoleChange | None, election.Decision]:
    """Choose the leader of a fenced, leaderless term by the rules of DESIGN §4, or say why not.

    A compare-and-set under the cluster's row lock: the term must still have no leader,
    so two supervisors (or a supervisor and an operator) never put two leaders in one
    term. `only` elects that node if the rules choose it (an operator's pick), nobody
    otherwise. `force` names a node to elect without the safety rules (audited as such)."""
    cluster_name = cluster_name_of(cluster)
    with transaction.atomic():
        locked = Cluster.objects.select_for_update().get(name=cluster_name)
        check_expectations(locked, expected_term)
        if locked.leader_id is not None:
            raise StaleExpectation(f"cluster {locked.name} already has leader {locked.leader} in term {locked.term}")
        contest, reports = election_of(locked)
        decision = election.decide(contest, reports, force=force, prefer=only)
        if only is not None and decision.winner not in (None, only):
            decision = election.Decision(
                None,
                f"{only} cannot lead safely: the rules choose {decision.winner} ({decision.reason})",
                decision.heard,
                decision.needed,
            )
        if decision.winner is None:
            status = ClusterStatus.NO_SAFE_ELECTION if contest.term > 0 else ClusterStatus.LEADERLESS
            Cluster.objects.filter(pk=locked.pk).update(status=status, status_message=decision.reason[:500])
            return None, decision
        target = Node.objects.get(cluster=locked, name=decision.winner)
        change, _ = RoleChange.objects.get_or_create(
            cluster=locked,
            term=locked.term,
            defaults={"old_leader_id": locked.last_leader_id, "reason": "", "actor": actor.name},
        )
        change.new_leader = target
        change.reason = (f"{change.reason}; " if change.reason else "") + f"elected: {decision.reason}"
        change.reason = change.reason[:500]
        change.actor, change.user_id = actor.name, actor.user_id
        change.save(update_fields=["new_leader", "reason", "actor", "user"])
        _install_leader(locked, target)
        raise_fence_after_commit(locked.name, locked.term)  # already there; restores a lost one
        log.warning("%s: %s (term %d)", locked.name, decision.reason, locked.term)
        return change, decision


def force_leader(cluster: Cluster | str, node: str, *, actor: Actor, reason: str) -> RoleChange:
    """An operator's unsafe election (Kafka's unclean.leader.election): ends the term if a
    leader still holds it, then elects `node` whatever the rules say; the RoleChange says
    what may be lost. Off unless asked for."""
    cluster_name = cluster_name_of(cluster)
    locked = Cluster.objects.get(name=cluster_name)
    _, reports = election_of(locked)
    target = next((r for r in reports if r.name == node), None)
    if target is None or not target.live:
        raise NotEligible(f"cannot force {node}: it is not a live node of cluster {cluster_name}")
    if locked.leader_id is not None:
        end_term(locked, actor=actor, reason=f"forced election of {node} asked", expected_term=locked.term)
    change, decision = elect(cluster_name, actor=actor, force=node)
    if change is None:
        raise NotEligible(decision.reason)
    RoleChange.objects.filter(pk=change.pk).update(reason=f"{reason}: {change.reason}"[:500])
    change.refresh_from_db()
    return change


def set_write_quorum(cluster: Cluster | str, write_quorum: int, *, actor: Actor, live_followers: int | None = None) -> Cluster:
    """Change W, 0..N. Lowering always works (and the election of this term keeps using
    the lowest W of the term); raising above the live followers would stop every commit,
    so it is refused with the reason."""
    cluster_name = cluster_name_of(cluster)
    with transaction.atomic():
        locked = Cluster.objects.select_for_update().get(name=cluster_name)
        refusal = write_quorum_refusal(locked, write_quorum, live_followers)
        if refusal:
            raise NotEligible(refusal)
        locked.write_quorum = write_quorum
        locked.term_write_quorum = min(locked.term_write_quorum, write_quorum)
        locked.save(update_fields=["write_quorum", "term_write_quorum"])
        log.info("%s: write quorum set to %d by %s", locked.name, write_quorum, actor.name)
        return locked


def write_quorum_refusal(cluster: Cluster, write_quorum: int, live_followers: int | None = None) -> str | None:
    if not 0 <= write_quorum <= cluster.replica_count:
        return f"The write quorum must be between 0 and the replica count ({cluster.replica_count})."
    if write_quorum <= cluster.write_quorum:
        return None
    if live_followers is None:
        live_followers = sum(
            1 for node in cluster.nodes.exclude(role=NodeRole.LEADER).exclude(status=NodeStatus.REMOVED)
            if is_live(node, cluster)
        )
    if write_quorum > live_followers:
        return (
            f"Cannot raise it to {write_quorum}: only {live_followers} follower(s) are live, so no "
            "command could commit. Start more followers first."
        )
    return None


def remove_node(node: Node | str, *, actor: Actor) -> Node:
    """Take a follower out of its cluster: its heartbeats are refused (it stops) and its
    acks stop counting. It still counts in the election that ends the current term, so
    no commit it helped make depends on it alone."""
    node_name = node.name if isinstance(node, Node) else node
    with transaction.atomic():
        target = Node.objects.select_related("cluster").get(name=node_name)
        locked = Cluster.objects.select_for_update().get(pk=target.cluster_id)
        target.refresh_from_db()
        if target.status == NodeStatus.REMOVED:
            return target
        if locked.leader_id == target.pk:
            raise NotEligible(f"{target.name} is the leader of {locked.name}; switch over first")
        others = locked.nodes.exclude(pk=target.pk).exclude(pk=locked.leader_id).exclude(status=NodeStatus.REMOVED)
        if others.count() < locked.write_quorum:
            raise NotEligible(
                f"removing {target.name} would leave {others.count()} follower(s), fewer than the "
                f"write quorum {locked.write_quorum}: lower the write quorum first"
            )
        Node.objects.filter(pk=target.pk).update(
            status=NodeStatus.REMOVED, role=NodeRole.FOLLOWER, removed_in_term=locked.term
        )
        log.warning("%s: node %s removed by %s in term %d", locked.name, target.name, actor.name, locked.term)
        target.refresh_from_db()
        return target


def cluster_name_of(cluster: Cluster | str) -> str:
    """Service functions take a cluster or its name."""
    return cluster.name if isinstance(cluster, Cluster) else cluster


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
    """The node's secret, or its rotated one (maintenance.rotate_node_secret): the first
    heartbeat with the new secret makes it the only one, so the old one stops working."""
    given = hash_node_secret(secret)
    if node.credentials_hash and hmac.compare_digest(node.credentials_hash, given):
        return True
    if node.next_credentials_hash and hmac.compare_digest(node.next_credentials_hash, given):
        # Conditional: a second rotation meanwhile wins, and this secret is refused next time.
        Node.objects.filter(pk=node.pk, next_credentials_hash=given).update(
            credentials_hash=given, next_credentials_hash=""
        )
        return True
    return False


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
    archive_id: str = ""
    last_term: int = 0
    fence_seen: int = 0
    stalled_for: float = 0.0
    truncations: int = 0
    settled_quorum: int = -1  # a leader: the lowest W it used since its first commit of its own term
    report_boot: str = ""
    report_seq: int = 0
    echo_epoch: int = 0  # the report epoch of the last heartbeat answer the node received
    archive_first_position: int = 0  # retention: the oldest position the archive holds
    archive_bytes: int = 0
    snapshot_position: int = 0  # its latest verified snapshot
    client_nonces: dict[str, int] = field(default_factory=dict)  # a leader's acknowledged batch-nonce marks


class ImpossibleReport(ServiceError):
    """A report that cannot be true (a term from the future): refused and logged."""

    code = "impossible_report"


def record_heartbeat(node_name: str, report: HeartbeatReport) -> Node:
    """Store a node's heartbeat and return its row as the report left it (with its
    cluster as read when the row was locked: the answer, node_config, reads both again).

    Locks the node's own row, never the cluster's, so heartbeats don't wait behind an
    election. A removed node is refused rather than revived. The report is judged by
    the archive identity rules (nodes.protocol.identity): a reset archive or a position
    that went back makes the node a new empty replica; a leader in that state loses
    its term at once.
    """
    with transaction.atomic():
        # A heartbeat lost in a database crash is harmless (the next one repeats it), so
        # it does not wait for the WAL flush that the nodes' archives on the same server need.
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
        node = _store_heartbeat(node_name, report)
        # True whenever it was acknowledged, even in a report older than the last one.
        trading.raise_nonce_marks(node.cluster_id, report.client_nonces)
    if node.resyncing and node.cluster.leader_id == node.pk:
        with contextlib.suppress(StaleExpectation):  # someone else changed the term first
            end_term(
                node.cluster.name,
                actor=SUPERVISOR,
                reason=f"leader {node.name} lost its archive ({node.status_message[:120]})",
                expected_term=node.cluster.term,
            )
        node = _node_row(node_name)
    return node


def _store_heartbeat(node_name: str, report: HeartbeatReport) -> Node:
    locked = Node.objects.select_for_update(of=("self",)).select_related("cluster").filter(name=node_name).order_by()[:1]
    node = locked[0] if locked else None
    if node is None or node.status == NodeStatus.REMOVED:
        raise NotEligible(f"node {node_name} has been removed; it must not run")
    cluster = node.cluster
    if _older_report(node, report):
        # An older report that arrived after a newer one (a slow request, or one of a
        # process that has since restarted): stale news, answered but not stored.
        return _node_row(node_name)
    verdict = identity.judge(
        identity.OnFile(node.archive_id, node.archived_position, node.resyncing, node.resync_target, node.truncations),
        identity.Claim(
            report.archive_id, report.archived_position, report.last_term, report.fence_seen, report.truncations
        ),
        cluster.term,
    )
    if verdict.refuse:
        log.error("%s: refused the report of %s: %s", cluster.name, node_name, verdict.refuse)
        raise ImpossibleReport(f"report of {node_name} refused: {verdict.refuse}")
    fields = {
        "status": report.status,
        "status_message": report.status_message[:500],
        "last_heartbeat": Now(),
        "archived_position": report.archived_position,
        "applied_position": report.applied_position,
        "state_hash": report.state_hash,
        "state_hash_position": report.state_hash_position,
        "software_version": report.software_version[:64],
        "last_term": report.last_term,
        "fence_seen": report.fence_seen,
        "stalled_for": report.stalled_for,
        "truncations": report.truncations,
        "resyncing": verdict.resyncing,
        "archive_first_position": report.archive_first_position,
        "archive_bytes": report.archive_bytes,
        "snapshot_position": report.snapshot_position,
    }
    if report.report_boot:
        fields.update(report_boot=report.report_boot, report_seq=report.report_seq)
    if report.archive_id:
        fields["archive_id"] = report.archive_id
    else:
        # A node still opening its archive claims nothing about its log: keep what is on
        # file, and withdraw its vote until it reports a log it has measured.
        for name in ("archived_position", "last_term", "truncations", "archive_first_position", "archive_bytes", "snapshot_position"):
            del fields[name]
        fields["fence_seen"] = 0
    if verdict.reset:
        log.warning("%s: node %s: %s", cluster.name, node_name, verdict.reason)
        Cluster.objects.filter(pk=cluster.pk).update(report_epoch=F("report_epoch") + 1)
        fields.update(resync_target=None, resync_epoch=Cluster.objects.values_list("report_epoch", flat=True).get(pk=cluster.pk))
        fields["status_message"] = f"{verdict.reason}; {report.status_message}"[:500]
    elif verdict.reason:
        log.warning("%s: node %s: %s", cluster.name, node_name, verdict.reason)
    Node.objects.filter(pk=node.pk).update(**fields)
    if cluster.leader_id == node.pk and not verdict.resyncing:
        _count_leader_report(cluster, report.archived_position, report.echo_epoch)
        if report.settled_quorum >= 0 and report.term == cluster.term and cluster.settled_term < cluster.term:
            _settle(cluster, report.settled_quorum)
    # The row as this report left it, without reading it again (the answer reads the
    # cluster's rows fresh anyway): all but the database's clock, and the cluster as read.
    for name, value in fields.items():
        if name != "last_heartbeat":
            setattr(node, name, value)
    return node


def _older_report(node: Node, report: HeartbeatReport) -> bool:
    """Reports of one archive are ordered by (boot of the archive, sequence)."""
    if not report.report_boot or not node.report_boot or report.archive_id != node.archive_id:
        return False
    try:
        return (int(report.report_boot), report.report_seq) <= (int(node.report_boot), node.report_seq)
    except ValueError:
        return False


def _settle(cluster: Cluster, used_quorum: int) -> None:
    """The leader of the current term committed a position of its own, with W members
    (the lowest W it used since): every earlier commit is now held by those quorums, so
    the election window starts here. Nodes removed during this term still count until
    the next settle (the leader may have counted their acks before it learned of it).
    Compare-and-set on (term, settled_term): a late report of an older term settles nothing."""
    with transaction.atomic():
        updated = Cluster.objects.filter(pk=cluster.pk, term=cluster.term, settled_term__lt=cluster.term).update(
            settled_term=cluster.term,
            term_write_quorum=Least(F("write_quorum"), used_quorum),
        )
        if updated:
            Node.objects.filter(cluster=cluster, removed_in_term__lt=cluster.term).update(removed_in_term=None)


def _count_leader_report(cluster: Cluster, leader_position: int, echoed_epoch: int) -> None:
    """Resync targets (nodes.protocol.identity.covers_reset): a leader report built after a
    node's reset was seen covers every commit its old archive may have helped make."""
    waiting = Node.objects.filter(cluster=cluster, resyncing=True, resync_target__isnull=True).order_by()
    covered = [pk for pk, reset_epoch in waiting.values_list("pk", "resync_epoch") if identity.covers_reset(echoed_epoch, reset_epoch)]
    if covered:
        Node.objects.filter(pk__in=covered, resync_target__isnull=True).update(resync_target=leader_position)


def _node_row(node_name: str) -> Node:
    """The node's row and its cluster's, as they are now (the heartbeat's answer reads the
    leader's and the switchover target's names from the cluster's nodes, not by joins)."""
    return Node.objects.select_related("cluster").get(name=node_name)


def reconcile_fence(cluster: Cluster | str) -> int | None:
    """Bring a fence that is above the database's term down to it (a Redis that outlived
    its control-plane database), under the cluster's row lock so the term is current.
    Returns the fence it had, or None when it was not above."""
    cluster_name = cluster_name_of(cluster)
    with transaction.atomic():
        locked = Cluster.objects.select_for_update().get(name=cluster_name)
        previous = lower_fence(streams.fence_connection(), locked.name, max(locked.term, 1)) if locked.term else None
    if previous:
        log.error("%s: the fence was at term %d, above the database's term %d: lowered", cluster_name, previous, locked.term)
    return previous


def restore_fence(cluster: Cluster) -> int | None:
    """Put the cluster's fence back at its term if Redis lost it (restart, flush), or
    raise it to the term if a role change committed but its process died before the fence.

    Safe at any time: the fence only moves up, and the table's term is the truth. Until
    it is back, every publish, delivery and ack is refused, so the heartbeats call this.
    """
    if cluster.term < 1:
        return None
    return set_fence(streams.fence_connection(), cluster.name, cluster.term)
