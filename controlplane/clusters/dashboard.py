"""The operators' dashboard: one self-refreshing page a cluster, and the JSON it polls."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

import redis
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render

import wire
from archive.deadletter import dead_letter_counts
from controlplane.clusters import services, streams
from controlplane.clusters.models import Cluster, Node
from nodes.protocol import election

RECENT_ROLE_CHANGES = 10


@cache
def commit_redis() -> redis.Redis:
    # Not streams.connection(): the page polls every second, so a Redis that hangs must
    # turn into "unavailable" in the JSON within a second, not into blocked workers.
    return streams.target().client(socket_connect_timeout=0.5, socket_timeout=0.5)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def commit_info(cluster_name: str, now: datetime) -> dict[str, Any]:
    """The leader's commit hash, or why there is none: `state` is ok, missing or redis_down."""
    try:
        raw = commit_redis().hgetall(wire.commit_key(cluster_name))
    except redis.RedisError as error:
        return {"state": "redis_down", "message": f"Redis is unavailable: {error}"}
    if not raw:
        return {"state": "missing", "message": "No leader has reported a commit position yet."}
    values = {key.decode(): value.decode() for key, value in raw.items()}
    updated_ns = _int(values.get("updated_ns"))
    return {
        "state": "ok",
        "message": "",
        "term": _int(values.get("term")),
        "leader": values.get("leader", ""),
        "commit_position": _int(values.get("commit_position")),
        "leader_position": _int(values.get("leader_position")),
        "write_quorum": _int(values.get("write_quorum")),
        "live_followers": [name for name in values.get("live_followers", "").split(",") if name],
        "age": None if updated_ns is None else round(now.timestamp() - updated_ns / 1e9, 3),
    }


def dead_letter_info(cluster_name: str) -> dict[str, int] | None:
    """Entries set aside as poison so far, per stream; None when Redis does not answer."""
    try:
        return dead_letter_counts(commit_redis(), cluster_name)
    except redis.RedisError:
        return None


def node_row(node: Node, leader_position: int | None, now: datetime) -> dict[str, Any]:
    heartbeat_age = (now - node.last_heartbeat).total_seconds() if node.last_heartbeat else None
    return {
        "name": node.name,
        "role": node.role,
        "status": node.status,
        "archived_position": node.archived_position,
        "applied_position": node.applied_position,
        "lag": None if leader_position is None else leader_position - node.archived_position,
        "heartbeat_age": None if heartbeat_age is None else round(heartbeat_age, 3),
        "status_message": node.status_message,
        "state_hash": node.state_hash,
        "state_hash_position": node.state_hash_position,
        "last_term": node.last_term,
        "resyncing": node.resyncing,
        "archive_events": archive_events(node),
        "archive_first_position": node.archive_first_position,
        "archive_bytes": node.archive_bytes,
        "snapshot_position": node.snapshot_position,
    }


def archive_events(node: Node) -> int | None:
    """Events the node's archive holds (retention deletes the oldest), None until reported."""
    if not node.archive_first_position:
        return None
    return max(0, node.archived_position - node.archive_first_position + 1)


def why_no_leader(cluster: Cluster) -> str | None:
    """None while the cluster has a leader; otherwise the supervisor's reason, in a sentence."""
    if cluster.leader_id is not None:
        return None
    return cluster.status_message or (
        "no leader elected yet: the supervisor elects one once the nodes report"
    )


def cluster_status(cluster: Cluster) -> dict[str, Any]:
    """Everything the dashboard shows, as plain values."""
    now = services.db_now()
    nodes = list(cluster.nodes.order_by("name"))
    leader = next((node for node in nodes if node.pk == cluster.leader_id), None)
    leader_position = leader.archived_position if leader else None
    changes = cluster.role_changes.select_related("old_leader", "new_leader").order_by("-term")
    return {
        "cluster": {
            "name": cluster.name,
            "term": cluster.term,
            "status": cluster.status,
            "replica_count": cluster.replica_count,
            "write_quorum": cluster.write_quorum,
            "tolerance": cluster.tolerance,
            "leader": leader.name if leader else None,
            "status_message": cluster.status_message,
            "why_no_leader": why_no_leader(cluster),
            "failover_timeout": cluster.failover_timeout,
            "paused": cluster.paused,
            "paused_reason": cluster.paused_reason,
        },
        "commit": commit_info(cluster.name, now),
        "dead_letters": dead_letter_info(cluster.name),
        "nodes": [node_row(node, leader_position, now) for node in nodes],
        "role_changes": [
            {
                "term": change.term,
                "old": change.old_leader.name if change.old_leader else None,
                "new": change.new_leader.name if change.new_leader else None,
                "actor": change.actor,
                "reason": change.reason,
                "time": change.created_at.isoformat(),
            }
            for change in changes[:RECENT_ROLE_CHANGES]
        ],
        "operator_actions": [
            {
                "action": action.get_action_display(),
                "term": action.term,
                "node": action.node.name if action.node else None,
                "actor": action.actor,
                "detail": action.detail,
                "reason": action.reason,
                "time": action.created_at.isoformat(),
            }
            for action in cluster.operator_actions.select_related("node")[:RECENT_ROLE_CHANGES]
        ],
        "server_time": now.isoformat(),
    }


@dataclass(frozen=True)
class ForceOption:
    """One node as a forced leader: what it holds, and what forcing it may lose."""

    node: str
    status: str
    live: bool
    resyncing: bool
    last_term: int
    position: int
    refusal: str  # why it cannot be forced at all; "" when it can
    at_risk: str  # what other nodes reported beyond it; "" when nothing


def election_outlook(cluster: Cluster) -> tuple[str, list[ForceOption]]:
    """For the pages that offer a forced election (admin, `manage.py force_leader`): what
    the election stands at, in a sentence, and per node what forcing it would lose."""
    contest, reports = services.election_of(cluster)
    if cluster.leader_id is not None:
        situation = (
            f"{cluster.leader} leads term {cluster.term}: forcing another leader ends its term "
            "first, though it may still be working"
        )
    else:
        safe = election.decide(contest, reports)
        situation = (
            f"no leader in term {cluster.term}; a safe election would choose {safe.winner} now "
            f"({safe.reason}), so forcing is not needed"
            if safe.winner
            else f"no leader in term {cluster.term}: {safe.reason}"
        )
    rows = {node.name: node for node in cluster.nodes.all()}
    options = []
    for report in sorted(reports, key=lambda r: r.name):
        forced = election.decide(contest, reports, force=report.name)
        options.append(
            ForceOption(
                node=report.name,
                status=rows[report.name].get_status_display(),
                live=report.live,
                resyncing=rows[report.name].resyncing,
                last_term=report.last_term,
                position=report.position,
                refusal="" if forced.winner else forced.reason,
                at_risk=forced.at_risk,
            )
        )
    return situation, options


@staff_member_required
def dashboard(request: HttpRequest, name: str) -> HttpResponse:
    cluster = get_object_or_404(Cluster, name=name)
    context = {
        **admin.site.each_context(request),
        "title": f"Dashboard of cluster {cluster.name}",
        "cluster": cluster,
        "opts": Cluster._meta,
    }
    return render(request, "clusters/dashboard.html", context)


@staff_member_required
def dashboard_status(request: HttpRequest, name: str) -> JsonResponse:
    cluster = get_object_or_404(Cluster, name=name)
    return JsonResponse(cluster_status(cluster), headers={"Cache-Control": "no-store"})
