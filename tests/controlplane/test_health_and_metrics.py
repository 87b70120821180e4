"""Probes and the Prometheus scrape: unauthenticated, cheap, and saying what is wrong."""

from __future__ import annotations

import time

import pytest
import redis
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

import wire
from controlplane import health, metrics
from controlplane.clusters import supervisor
from tests.controlplane.reports import report
from wire.keys import keys


@pytest.fixture
def no_supervisor_record(db):
    key = health.supervisor_key()
    health.probe_redis().delete(key)
    yield key
    health.probe_redis().delete(key)


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_healthz_answers_without_credentials_or_database(client):
    response = client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    assert "no-cache" in response["Cache-Control"]


def test_readyz_waits_for_a_supervisor_cycle(client, cluster, no_supervisor_record):
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"] == "ok"
    assert "no supervisor cycle recorded" in body["checks"]["supervisor"]

    supervisor.run_all()  # records its cycle

    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    assert response.json()["checks"]["supervisor"].startswith("last cycle ")


def test_readyz_says_when_the_supervisor_stopped(client, cluster, no_supervisor_record):
    from controlplane.clusters.services import db_now

    stale = db_now().timestamp() - settings.SUPERVISOR_STALE_AFTER - 5
    health.probe_redis().set(no_supervisor_record, f"{stale:.3f}")
    body = client.get("/readyz").json()
    assert "last supervisor cycle" in body["checks"]["supervisor"]
    assert f"more than {settings.SUPERVISOR_STALE_AFTER:.0f} s" in body["checks"]["supervisor"]


def test_readyz_says_when_redis_is_down(client, cluster, monkeypatch):
    unreachable = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.3)
    monkeypatch.setattr(health, "probe_redis", lambda: unreachable)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["redis"].startswith("Redis unavailable")


@pytest.fixture
def commit_hash(cluster):
    client = redis.Redis.from_url(settings.REDIS_URL)
    key = wire.commit_key(cluster.name)
    counts = keys(cluster.name).deadletter_counts
    client.delete(key, counts)
    yield client, key, counts
    client.delete(key, counts)


def test_metrics_cover_clusters_and_nodes(client, cluster, commit_hash):
    redis_client, key, counts = commit_hash
    report("alpha-1", 120, last_term=1)
    report("alpha-2", 100, last_term=1, ago=1.0)
    report("alpha-3", 40, last_term=1, status="offline", ago=30)
    redis_client.hset(
        key,
        mapping={"term": 1, "leader": "alpha-1", "commit_position": 100, "leader_position": 120,
                 "write_quorum": 1, "live_followers": "alpha-2", "updated_ns": time.time_ns()},
    )  # fmt: skip
    redis_client.hset(counts, mapping={"commands": 2, "acks": 1})

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    got = samples(response.text)
    c = (("cluster", "alpha"),)
    assert got[("tec_cluster_term", c)] == 1
    assert got[("tec_cluster_has_leader", c)] == 1
    assert got[("tec_cluster_paused", c)] == 0
    assert got[("tec_cluster_write_quorum", c)] == 1
    assert got[("tec_cluster_live_followers", c)] == 1
    assert got[("tec_cluster_commit_position", c)] == 100
    assert got[("tec_cluster_uncommitted_events", c)] == 20
    assert got[("tec_cluster_state_hash_divergent", c)] == 0
    assert got[("tec_cluster_dead_letters_total", (("cluster", "alpha"), ("stream", "commands")))] == 2

    def node(name: str) -> tuple:
        return (("cluster", "alpha"), ("node", name))

    assert got[("tec_node_lag_events", node("alpha-3"))] == 80
    assert got[("tec_node_lag_events", node("alpha-1"))] == 0
    assert got[("tec_node_archived_position", node("alpha-2"))] == 100
    assert 1.0 <= got[("tec_node_heartbeat_age_seconds", node("alpha-2"))] < 60
    assert got[("tec_node_role", (*node("alpha-1"), ("tec_node_role", "leader")))] == 1
    assert got[("tec_node_status", (*node("alpha-3"), ("tec_node_status", "offline")))] == 1
    assert got[("tec_controlplane_scrape_ok", ())] == 1


def test_metrics_ask_for_the_token_when_one_is_set(client, cluster, settings):
    settings.METRICS_TOKEN = "s3cret-scrape-token"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape-token").status_code == 200


def test_lag_in_seconds_is_how_long_ago_the_leader_stood_there():
    history = metrics.PositionHistory()
    history.add("c", 100.0, 1000)
    history.add("c", 110.0, 2000)
    history.add("c", 120.0, 3000)
    assert history.lag_seconds("c", 3000, 125.0) == 0.0
    assert history.lag_seconds("c", 1500, 125.0) == pytest.approx(20.0)  # the leader passed 1500 at t=105
    assert history.lag_seconds("c", 500, 125.0) == pytest.approx(25.0)  # behind everything seen: at least
    assert history.lag_seconds("unknown", 1, 125.0) is None
    history.add("c", 130.0, 10)  # a new leader's log starts over
    assert history.lag_seconds("c", 10, 131.0) == 0.0
