"""A node's own Prometheus metrics, on a port of its own (NODE_METRICS_PORT), so that
Prometheus can scrape a node the control plane cannot reach.

What only the node can measure: its GC pauses (a histogram), and, while it leads, its
commit position, the events it archived but has not committed (data at risk), a commit
latency histogram and a committed-events counter. Plus what it would tell the control
plane: role, term, positions, the loop's stall time, lag behind the leader's commit hash.

The leader observes the commit latency itself as it delivers (CommitObserver: a few
observations per cycle, per batch and never per command); a thread waking 100 times a
second to sample positions cost more CPU than that and competed with the loops for the
GIL. Off unless NODE_METRICS_PORT is set; a failure here never stops the node.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, StateSetMetricFamily
from prometheus_client.registry import Collector

import wire
from base.env import env_int, env_str

log = logging.getLogger(__name__)

GC_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
COMMIT_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


_TICKS = os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) of each live thread of this process, by thread name
    (leader-... numbers dropped so that a role's threads keep their name across terms)."""
    out: dict[str, float] = {}
    for thread in threading.enumerate():
        tid = thread.native_id
        try:
            with open(f"/proc/self/task/{tid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, TypeError):
            continue
        name = thread.name.split("-", 1)[0] if "-" in thread.name else thread.name
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / _TICKS
    return out


class LoopStats:
    """What a node's loops did, counted where it happens (plain increments; read at scrape
    time): cycles and what they carried, archive appends, hot-path Redis round trips. The
    benchmark divides them by each other: commands per cycle, round trips per cycle."""

    __slots__ = ("appends", "cycles", "items", "redis_round_trips", "rejected")

    def __init__(self) -> None:
        self.cycles = 0  # loop cycles that processed something (commands or events)
        self.items = 0  # leader: commands processed; follower: events archived
        self.appends = 0  # archive appends (one PostgreSQL transaction each)
        self.redis_round_trips = 0  # on the loops' own connections (wire.redisconn)
        # Entries refused and set aside, by stream and reason: "acks.bad_signature",
        # "events.unsigned", "replay.replayed", "events" (malformed)...
        self.rejected: dict[str, int] = {}

    def count_rejected(self, name: str) -> None:
        self.rejected[name] = self.rejected.get(name, 0) + 1


class NodeCollector(Collector):
    """Reads the node's attributes at scrape time (plain reads of values the loop swaps in whole)."""

    def __init__(self, node) -> None:
        self.node = node

    def collect(self) -> Iterator:
        node = self.node
        view, state = node.view, node.state
        labels = [view.cluster if view else "", node.config.name]
        names = ["cluster", "node"]

        def gauge(name: str, doc: str, value: float | None) -> GaugeMetricFamily:
            family = GaugeMetricFamily(f"tec_node_{name}", doc, labels=names)
            if value is not None:
                family.add_metric(labels, value)
            return family

        archived, last_term = state.tail if state else (0, 0)
        role = view.role if view else "follower"
        leader = node.role if role == "leader" else None
        yield gauge("ready", "1 once the start-up replay is done.", 1 if node.ready else 0)
        yield gauge("term", "The term the control plane last gave.", view.term if view else 0)
        yield gauge("archived_position", "Last position in the node's archive.", archived)
        yield gauge("last_term", "Term of the last archived event.", last_term)
        yield gauge("applied_position", "Last position applied to the engine.", state.engine.position if state else 0)
        yield gauge("stalled_seconds", "Seconds since the loop last finished a cycle.", max(0.0, time.monotonic() - node.cycle_done_at))
        retention = getattr(node, "retention", None)
        size = retention.size if retention is not None else None
        yield gauge("archive_events", "Events the node's archive holds (retention deletes the oldest).", size.events if size else None)
        yield gauge("archive_bytes", "The node's archive on disk: events and snapshots.", size.bytes if size else None)
        yield gauge("archive_first_position", "The oldest position the node's archive holds.", size.first if size else None)
        yield gauge("snapshot_position", "Position of the latest verified snapshot.", retention.snapshot_position if size else None)
        roles = StateSetMetricFamily("tec_node_role", "The role the control plane gave.", labels=names)
        roles.add_metric(labels, {"leader": role == "leader", "follower": role != "leader"})
        yield roles
        commit = getattr(leader, "commit_position", None)
        tracker = getattr(getattr(leader, "committer", None), "tracker", None)
        leading_at = getattr(tracker, "leader_position", None)
        yield gauge("commit_position", "While leading: the commit position.", commit)
        yield gauge(
            "uncommitted_events",
            "While leading: events archived but not committed yet (data at risk).",
            None if commit is None or leading_at is None else max(0, leading_at - commit),
        )
        yield gauge("lag_events", "Events behind the leader's position in its commit hash.", self._lag(archived))
        stats = node.stats
        for name, doc, value in (
            ("loop_cycles", "Loop cycles that processed commands (leader) or events (follower).", stats.cycles),
            ("loop_items", "Commands processed (leader) or events archived (follower).", stats.items),
            ("archive_appends", "Archive appends, one PostgreSQL transaction each.", stats.appends),
            ("redis_round_trips", "Round trips on the loops' own Redis connections.", stats.redis_round_trips),
        ):
            family = CounterMetricFamily(f"tec_node_{name}", doc, labels=names)
            family.add_metric(labels, value)
            yield family
        rejected = CounterMetricFamily(
            "tec_node_rejected_entries",
            "Entries this node refused and set aside, by stream (acks, events, replay, commands) "
            "and reason (unsigned, unknown_key, bad_signature, replayed, malformed): they changed nothing.",
            labels=[*names, "stream", "reason"],
        )
        for name, count in list(stats.rejected.items()):
            stream, _, reason = name.partition(".")
            rejected.add_metric([*labels, stream, reason or "malformed"], count)
        yield rejected
        threads = CounterMetricFamily(
            "tec_node_thread_cpu_seconds", "CPU time of each thread of the node (from /proc).",
            labels=[*names, "thread"],
        )  # fmt: skip
        for thread_name, seconds in thread_cpu_seconds().items():
            threads.add_metric([*labels, thread_name], seconds)
        yield threads

    def _lag(self, archived: int) -> int | None:
        view = self.node.view
        if view is None or view.role == "leader":
            return 0 if view is not None else None
        try:
            raw = self.node.redis.hget(wire.commit_key(view.cluster), "leader_position")
        except Exception:  # Redis down: no lag figure rather than a failed scrape
            return None
        return None if raw is None else max(0, int(raw) - archived)


class GcPauses:
    """Every collection's pause into a histogram (the node's own gc.freeze()/collect at
    start-up and after a rebuild are skipped, as GcWatch skips them)."""

    def __init__(self, registry: CollectorRegistry, node) -> None:
        self.node = node
        self.started = 0.0
        self.histogram = Histogram(
            "tec_node_gc_pause_seconds", "Garbage-collector pauses.", ["generation"],
            buckets=GC_BUCKETS, registry=registry,
        )  # fmt: skip

    def __call__(self, phase: str, info: dict) -> None:
        if self.node.gc_watch.ignoring:
            return
        if phase == "start":
            self.started = time.perf_counter()
        else:
            self.histogram.labels(str(info.get("generation", -1))).observe(time.perf_counter() - self.started)


class CommitObserver:
    """While the node leads: commit latency and committed events, observed by the leader
    as it delivers (Node.on_commit): per delivered batch, the time from the leader
    holding it in its archive to its delivery after commit; per delivery, the events the
    commit position moved by. A few observations per cycle, no thread of its own."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.latency = Histogram(
            "tec_node_commit_latency_seconds",
            "While leading: from a batch archived by the leader to its results delivered after commit.",
            buckets=COMMIT_BUCKETS, registry=registry,
        )  # fmt: skip
        self.committed = Counter(
            "tec_node_committed_events", "While leading: events committed.", registry=registry
        )

    def __call__(self, latencies: list[float], events: int) -> None:
        try:
            for seconds in latencies:
                self.latency.observe(seconds)
            if events > 0:
                self.committed.inc(events)
        except Exception:  # never let metrics take the commit thread down
            log.debug("commit observer", exc_info=True)


def start(node, port: int | None = None) -> int | None:
    """Serve the node's metrics on NODE_METRICS_PORT (NODE_METRICS_ADDR, default 127.0.0.1)
    for the life of the process. Returns the port, or None when off or the port is taken."""
    port = env_int("NODE_METRICS_PORT", 0, minimum=0) if port is None else port
    if not port:
        return None
    registry = CollectorRegistry()
    registry.register(NodeCollector(node))
    gc.callbacks.append(GcPauses(registry, node))
    node.on_commit = CommitObserver(registry)
    address = env_str("NODE_METRICS_ADDR", "127.0.0.1")
    try:
        start_http_server(port, addr=address, registry=registry)
    except OSError as error:
        log.warning("node metrics not served on %s:%d: %s", address, port, error)
        return None
    log.info("node metrics on http://%s:%d/metrics (pid %d)", address, port, os.getpid())
    return port
