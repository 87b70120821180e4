"""Prometheus metrics of the control plane (/metrics): every cluster and node, read at scrape time.

A collector, not counters kept in the web process: each scrape reads the cluster and
node rows (what the nodes' heartbeats last said), the leaders' commit hashes and the
dead-letter counts from Redis, so every gunicorn worker answers the same and nothing is
lost on a restart. Ages are judged with the database's clock (services.db_now). What
only a node can measure (GC pauses, commit latency, committed commands) each node
exposes on its own port (nodes/metrics.py, NODE_METRICS_PORT).

Names: tec_cluster_* labelled by cluster, tec_node_* by cluster and node. See the
README's "Running in production" for the scrape configuration and example alerts.
"""

from __future__ import annotations

import bisect
import hmac
import threading
from collections import deque
from collections.abc import Iterator

import redis
from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, StateSetMetricFamily
from prometheus_client.registry import Collector

from archive.deadletter import dead_letter_counts
from controlplane import health
from controlplane.clusters import services
from controlplane.clusters.models import Cluster, ClusterStatus, Node, NodeRole, NodeStatus

CLUSTER = ["cluster"]
NODE = ["cluster", "node"]
HISTORY = 512  # leader-position samples kept per cluster, for lag in seconds


class PositionHistory:
    """When the leader was at which position, as seen at each scrape of this process: a
    follower's lag in seconds is how long ago the leader stood where it stands now."""

    def __init__(self, size: int = HISTORY) -> None:
        self._samples: dict[str, deque[tuple[float, int]]] = {}
        self._size = size
        self._lock = threading.Lock()  # gunicorn threads scrape at once

    def add(self, cluster: str, at: float, position: int) -> None:
        with self._lock:
            samples = self._samples.setdefault(cluster, deque(maxlen=self._size))
            if samples and position < samples[-1][1]:
                samples.clear()  # a new leader's log: the old samples say nothing of it
            samples.append((at, position))

    def lag_seconds(self, cluster: str, position: int, now: float) -> float | None:
        """Seconds since the leader was at `position`; None when unknown (no history)."""
        with self._lock:
            samples = list(self._samples.get(cluster, ()))
        if not samples:
            return None
        if position >= samples[-1][1]:
            return 0.0
        positions = [p for _, p in samples]
        after = bisect.bisect_right(positions, position)  # first sample past `position`
        if after == 0:
            return now - samples[0][0]  # behind everything we saw: at least this long
        (t0, p0), (t1, p1) = samples[after - 1], samples[after]
        passed = t0 + (t1 - t0) * (position - p0) / max(p1 - p0, 1)
        return max(0.0, now - passed)


def _live_follower(node: Node, cluster: Cluster, now) -> bool:
    return node.role == NodeRole.FOLLOWER and services.is_live(node, cluster, now)


class ClusterCollector(Collector):
    def __init__(self, history: PositionHistory | None = None) -> None:
        self.history = history or PositionHistory()

    def collect(self) -> Iterator:
        up = GaugeMetricFamily("tec_controlplane_scrape_ok", "1 when the database and Redis answered this scrape.")
        try:
            yield from self._collect()
        except (DatabaseError, redis.RedisError):
            up.add_metric([], 0)
        else:
            up.add_metric([], 1)
        yield up

    def _collect(self) -> Iterator:
        from controlplane.clusters import dashboard, services, supervisor

        now = services.db_now()
        clusters = list(Cluster.objects.order_by("name"))
        nodes_of: dict[int, list[Node]] = {}
        for node in Node.objects.order_by("name"):
            nodes_of.setdefault(node.cluster_id, []).append(node)
        connection = dashboard.commit_redis()

        g = {
            name: GaugeMetricFamily(f"tec_cluster_{name}", doc, labels=CLUSTER)
            for name, doc in [
                ("term", "The cluster's term (leader epoch)."),
                ("has_leader", "1 when the cluster has a leader."),
                ("paused", "1 in maintenance mode: no automatic failover."),
                ("replicas", "Replicas N: followers that hold a copy."),
                ("write_quorum", "Write quorum W: follower acks a commit needs."),
                ("live_followers", "Followers live now (fresh heartbeat)."),
                ("degraded", "1 when fewer followers are live than the replica count."),
                ("no_safe_election", "1 when leaderless and no election is safe yet (see status_message)."),
                ("state_hash_divergent", "1 when nodes report different state hashes at the same position."),
                ("commit_position", "The leader's commit position (events), from its commit hash."),
                ("leader_position", "The leader's archived position, from its commit hash."),
                ("uncommitted_events", "Events the leader archived but not yet committed: data at risk."),
                ("commit_info_age_seconds", "Seconds since the leader last wrote its commit hash."),
            ]
        }
        status = StateSetMetricFamily("tec_cluster_status", "The cluster's status.", labels=CLUSTER)
        dead = CounterMetricFamily(
            "tec_cluster_dead_letters", "Entries set aside as poison, per stream.", labels=[*CLUSTER, "stream"]
        )
        n = {
            name: GaugeMetricFamily(f"tec_node_{name}", doc, labels=NODE)
            for name, doc in [
                ("archived_position", "Last position in the node's archive."),
                ("applied_position", "Last position applied to the node's engine."),
                ("last_term", "Term of the node's last archived event."),
                ("lag_events", "Events the node's archive is behind the leader's."),
                ("lag_seconds", "How long ago the leader stood where the node stands (estimated from scrapes)."),
                ("heartbeat_age_seconds", "Seconds since the node's last heartbeat."),
                ("stalled_seconds", "Seconds the node's loop had made no progress, as it last reported."),
                ("resyncing", "1 for a new empty replica that neither votes nor leads yet."),
                ("archive_events", "Events the node's archive holds (retention deletes the oldest)."),
                ("archive_bytes", "The node's archive on disk (events and snapshots), as it last reported."),
                ("snapshot_position", "Position of the node's latest verified snapshot."),
                ("is_leader", "1 for the cluster's leader."),
            ]
        }
        role = StateSetMetricFamily("tec_node_role", "The node's role.", labels=NODE)
        node_status = StateSetMetricFamily("tec_node_status", "The node's status.", labels=NODE)

        for cluster in clusters:
            labels = [cluster.name]
            nodes = nodes_of.get(cluster.pk, [])
            members = [node for node in nodes if node.status != NodeStatus.REMOVED]
            leader = next((node for node in nodes if node.pk == cluster.leader_id), None)
            commit = dashboard.commit_info(cluster.name, now)
            g["term"].add_metric(labels, cluster.term)
            g["has_leader"].add_metric(labels, 1 if leader else 0)
            g["paused"].add_metric(labels, 1 if cluster.paused else 0)
            g["replicas"].add_metric(labels, cluster.replica_count)
            g["write_quorum"].add_metric(labels, cluster.write_quorum)
            g["live_followers"].add_metric(labels, sum(_live_follower(node, cluster, now) for node in members))
            g["degraded"].add_metric(labels, 1 if cluster.status == ClusterStatus.DEGRADED else 0)
            g["no_safe_election"].add_metric(labels, 1 if cluster.status == ClusterStatus.NO_SAFE_ELECTION else 0)
            g["state_hash_divergent"].add_metric(labels, 1 if supervisor.divergent_nodes(members) else 0)
            status.add_metric(labels, {choice: cluster.status == choice for choice in ClusterStatus.values})
            if commit["state"] == "ok" and commit["commit_position"] is not None:
                g["commit_position"].add_metric(labels, commit["commit_position"])
                if commit["leader_position"] is not None:
                    g["leader_position"].add_metric(labels, commit["leader_position"])
                    g["uncommitted_events"].add_metric(
                        labels, max(0, commit["leader_position"] - commit["commit_position"])
                    )
                if commit["age"] is not None:
                    g["commit_info_age_seconds"].add_metric(labels, max(0.0, commit["age"]))
            for stream, count in sorted(dead_letter_counts(connection, cluster.name).items()):
                dead.add_metric([cluster.name, stream], count)

            now_s = now.timestamp()
            if leader is not None:
                self.history.add(cluster.name, now_s, leader.archived_position)
            for node in nodes:
                labels = [cluster.name, node.name]
                role.add_metric(labels, {choice: node.role == choice for choice in NodeRole.values})
                node_status.add_metric(labels, {choice: node.status == choice for choice in NodeStatus.values})
                n["archived_position"].add_metric(labels, node.archived_position)
                n["applied_position"].add_metric(labels, node.applied_position)
                n["last_term"].add_metric(labels, node.last_term)
                n["stalled_seconds"].add_metric(labels, node.stalled_for)
                n["resyncing"].add_metric(labels, 1 if node.resyncing else 0)
                events = dashboard.archive_events(node)
                if events is not None:
                    n["archive_events"].add_metric(labels, events)
                    n["archive_bytes"].add_metric(labels, node.archive_bytes)
                    n["snapshot_position"].add_metric(labels, node.snapshot_position)
                n["is_leader"].add_metric(labels, 1 if node.pk == cluster.leader_id else 0)
                if node.last_heartbeat is not None:
                    n["heartbeat_age_seconds"].add_metric(
                        labels, max(0.0, (now - node.last_heartbeat).total_seconds())
                    )
                if leader is not None and node.status != NodeStatus.REMOVED:
                    n["lag_events"].add_metric(labels, max(0, leader.archived_position - node.archived_position))
                    seconds = self.history.lag_seconds(cluster.name, node.archived_position, now_s)
                    if seconds is not None:
                        n["lag_seconds"].add_metric(labels, seconds)

        yield from g.values()
        yield status
        yield dead
        yield from n.values()
        yield role
        yield node_status
        yield from self._supervisor(now.timestamp())

    def _supervisor(self, now: float) -> Iterator:
        age = GaugeMetricFamily(
            "tec_supervisor_last_cycle_age_seconds", "Seconds since the supervisor's last cycle."
        )
        raw = health.probe_redis().get(health.supervisor_key())
        if raw is not None:
            age.add_metric([], max(0.0, now - float(raw)))
        yield age


REGISTRY = CollectorRegistry()
REGISTRY.register(ClusterCollector())
ProcessCollector(registry=REGISTRY)


def _authorized(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if not token:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)


@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    if not _authorized(request):
        response = HttpResponse("Send 'Authorization: Bearer <METRICS_TOKEN>'.\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
