"""The operators' dashboard: staff only, the status JSON it polls, and its Redis tolerance."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone

import wire
from controlplane.clusters import dashboard, services
from controlplane.clusters.models import Cluster, Node, NodeStatus

PAGE = "/dashboard/alpha/"
STATUS = "/dashboard/alpha/status.json"


@pytest.fixture
def staff(operator):
    operator.is_staff = True
    operator.save(update_fields=["is_staff"])
    return operator


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


@pytest.fixture
def commit_hash(cluster):
    """The alpha commit hash is absent before and after each test."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    key = wire.commit_key(cluster.name)
    client.delete(key)
    yield client, key
    client.delete(key)


def test_staff_gets_the_page_with_a_breadcrumb_to_the_cluster_admin(staff_client, cluster):
    response = staff_client.get(PAGE)
    assert response.status_code == 200
    assert f'href="/admin/clusters/cluster/{cluster.pk}/change/"' in response.text
    assert 'const STATUS_URL = "/dashboard/alpha/status.json"' in response.text
    assert "<canvas" in response.text


def test_status_json_reports_nodes_lags_commit_and_role_changes(staff_client, cluster, commit_hash):
    client, key = commit_hash
    now = timezone.now()
    Node.objects.filter(name="alpha-1").update(
        archived_position=100, applied_position=100, last_heartbeat=now,
        state_hash="abc123", state_hash_position=96, status=NodeStatus.LIVE,
    )  # fmt: skip
    Node.objects.filter(name="alpha-2").update(
        archived_position=100, applied_position=98, last_heartbeat=now - timedelta(seconds=2)
    )
    Node.objects.filter(name="alpha-3").update(
        archived_position=60, applied_position=55, status=NodeStatus.OFFLINE
    )
    client.hset(
        key,
        mapping={"term": 1, "leader": "alpha-1", "commit_position": 100, "leader_position": 100,
                 "write_quorum": 1, "live_followers": "alpha-2", "updated_ns": time.time_ns()},
    )  # fmt: skip

    response = staff_client.get(STATUS)

    assert response.status_code == 200
    data = response.json()
    assert data["cluster"] == {
        "name": "alpha", "term": 1, "status": cluster.status, "replica_count": 2,
        "write_quorum": 1, "tolerance": "survives 1 node(s) down without stopping; loses nothing with 1 archive(s) lost",
        "leader": "alpha-1", "status_message": "", "why_no_leader": None, "failover_timeout": 3.0,
        "paused": False, "paused_reason": "",
    }  # fmt: skip
    nodes = {node["name"]: node for node in data["nodes"]}
    assert list(nodes) == ["alpha-1", "alpha-2", "alpha-3"]
    assert {name: node["lag"] for name, node in nodes.items()} == {
        "alpha-1": 0, "alpha-2": 0, "alpha-3": 40,
    }  # fmt: skip
    assert nodes["alpha-1"]["role"] == "leader"
    assert nodes["alpha-1"]["state_hash"] == "abc123"
    assert nodes["alpha-1"]["state_hash_position"] == 96
    assert nodes["alpha-2"]["applied_position"] == 98
    assert 2 <= nodes["alpha-2"]["heartbeat_age"] < 60
    assert nodes["alpha-3"]["status"] == "offline"
    assert nodes["alpha-3"]["heartbeat_age"] is None
    commit = data["commit"]
    assert commit["state"] == "ok"
    assert commit["commit_position"] == 100
    assert commit["leader_position"] == 100
    assert commit["live_followers"] == ["alpha-2"]
    assert commit["write_quorum"] == 1
    assert [(c["term"], c["old"], c["new"], c["actor"]) for c in data["role_changes"]] == [
        (1, None, "alpha-1", "test")
    ]
    assert isinstance(data["dead_letters"], dict)  # per stream; Redis is shared, so not asserted empty
    assert data["server_time"]


def test_status_json_answers_without_a_commit_hash(staff_client, cluster, commit_hash):
    response = staff_client.get(STATUS)
    assert response.status_code == 200
    assert response.json()["commit"]["state"] == "missing"
    assert len(response.json()["nodes"]) == 3


def test_status_json_answers_when_redis_is_down(staff_client, cluster, monkeypatch):
    unreachable = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    monkeypatch.setattr(dashboard, "commit_redis", lambda: unreachable)
    response = staff_client.get(STATUS)
    assert response.status_code == 200
    commit = response.json()["commit"]
    assert commit["state"] == "redis_down"
    assert "Redis is unavailable" in commit["message"]


def test_without_a_leader_lag_is_unknown(staff_client, db):
    beta = Cluster.objects.create(name="beta")
    services.register_node(
        name="beta-1", cluster=beta,
        archive_location="postgresql://postgres@127.0.0.1:5432/tec_archive_beta_1",
    )  # fmt: skip
    data = staff_client.get("/dashboard/beta/status.json").json()
    assert data["cluster"]["leader"] is None
    assert data["nodes"][0]["lag"] is None
    assert data["role_changes"] == []


@pytest.mark.parametrize("url", [PAGE, STATUS])
def test_anonymous_is_sent_to_the_login_page(client, cluster, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response.url.startswith("/admin/login/")


@pytest.mark.parametrize("url", [PAGE, STATUS])
def test_a_signed_in_user_who_is_not_staff_is_refused(client, viewer, cluster, url):
    client.force_login(viewer)
    response = client.get(url)
    assert response.status_code == 302
    assert response.url.startswith("/admin/login/")


@pytest.mark.parametrize("url", ["/dashboard/nosuch/", "/dashboard/nosuch/status.json"])
def test_unknown_cluster_is_404(staff_client, cluster, url):
    assert staff_client.get(url).status_code == 404


def test_cluster_list_in_the_admin_links_to_the_dashboard(client, cluster, admin_user):
    client.force_login(admin_user)
    response = client.get("/admin/clusters/cluster/")
    assert response.status_code == 200
    assert 'href="/dashboard/alpha/"' in response.text
