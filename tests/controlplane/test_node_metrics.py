"""A node's own metrics (nodes/metrics.py), on a fake node: no process, no database.

(Belongs in tests/nodes/ by the mirror rule; kept here while that folder is being edited.)
"""

from __future__ import annotations

import gc
import socket
import threading
import urllib.request
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from nodes import metrics
from nodes.gcwatch import GcWatch


def fake_node(role: str = "leader", **leader) -> SimpleNamespace:
    tracker = SimpleNamespace(leader_position=leader.get("archived", 0))
    return SimpleNamespace(
        config=SimpleNamespace(name="n1"),
        view=SimpleNamespace(cluster="c", role=role, term=3),
        state=SimpleNamespace(tail=(120, 3), engine=SimpleNamespace(position=118)),
        role=SimpleNamespace(commit_position=leader.get("commit", 0), committer=SimpleNamespace(tracker=tracker))
        if role == "leader"
        else None,
        ready=True,
        cycle_done_at=0.0,
        gc_watch=GcWatch(),
        redis=None,
        stopped=threading.Event(),
        stats=loop_stats(cycles=7, items=350, appends=7, redis_round_trips=21),
    )


def loop_stats(**counts: int) -> metrics.LoopStats:
    stats = metrics.LoopStats()
    for name, value in counts.items():
        setattr(stats, name, value)
    return stats


def values(registry: CollectorRegistry) -> dict[str, float]:
    return {
        sample.name + "".join(f"[{v}]" for k, v in sorted(sample.labels.items()) if k not in ("cluster", "node")): sample.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for sample in family.samples
    }


def test_the_collector_reports_positions_and_data_at_risk_while_leading():
    registry = CollectorRegistry()
    registry.register(metrics.NodeCollector(fake_node(archived=120, commit=100)))
    got = values(registry)
    assert got["tec_node_archived_position"] == 120
    assert got["tec_node_applied_position"] == 118
    assert got["tec_node_term"] == 3
    assert got["tec_node_commit_position"] == 100
    assert got["tec_node_uncommitted_events"] == 20
    assert got["tec_node_role[leader]"] == 1
    assert got["tec_node_lag_events"] == 0
    # What the loops did, for the benchmark's per-cycle figures.
    assert got["tec_node_loop_cycles_total"] == 7
    assert got["tec_node_loop_items_total"] == 350
    assert got["tec_node_archive_appends_total"] == 7
    assert got["tec_node_redis_round_trips_total"] == 21
    # Per thread CPU, this test's own thread included, by name.
    assert "tec_node_thread_cpu_seconds_total[MainThread]" in got


def test_the_leader_observes_commit_latency_and_counts_commits():
    registry = CollectorRegistry()
    observe = metrics.CommitObserver(registry)
    observe([0.04], 50)  # a batch committed 40 ms after the leader archived it, 50 events
    observe([0.1, 0.002], 30)  # two batches in one delivery
    observe([], 0)  # a status refresh: nothing delivered
    got = values(registry)
    assert got["tec_node_commit_latency_seconds_count"] == 3
    assert got["tec_node_commit_latency_seconds_sum"] == pytest.approx(0.142)
    assert got["tec_node_commit_latency_seconds_bucket[0.005]"] == 1
    assert got["tec_node_committed_events_total"] == 80


def test_start_hands_the_leader_its_commit_observer(monkeypatch):
    node = fake_node()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    before = list(gc.callbacks)
    try:
        metrics.start(node, port=port)
        assert isinstance(node.on_commit, metrics.CommitObserver)
    finally:
        node.stopped.set()
        gc.callbacks[:] = before


def test_gc_pauses_go_into_a_histogram():
    registry = CollectorRegistry()
    pauses = metrics.GcPauses(registry, fake_node())
    gc.callbacks.append(pauses)
    try:
        gc.collect()
    finally:
        gc.callbacks.remove(pauses)
    assert values(registry)["tec_node_gc_pause_seconds_count[2]"] >= 1


def test_start_serves_on_the_port_and_is_off_without_one(monkeypatch):
    monkeypatch.delenv("NODE_METRICS_PORT", raising=False)
    node = fake_node(archived=5, commit=5)
    assert metrics.start(node) is None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    before = list(gc.callbacks)
    try:
        assert metrics.start(node, port=port) == port
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert 'tec_node_archived_position{cluster="c",node="n1"} 120.0' in text
    finally:
        node.stopped.set()
        gc.callbacks[:] = before
