"""Named actors for control-plane tests: a viewer, an operator, and a three-node cluster."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.core.cache import cache
from rest_framework.test import APIClient

from controlplane.clusters import services, tokens
from controlplane.clusters.models import Cluster


@pytest.fixture(autouse=True)
def _fresh_throttles():
    """Throttle counts live in the (per-process) cache: each test starts with none."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def viewer(db) -> User:
    return User.objects.create_user("vera-viewer", password="pw-viewer-123")


@pytest.fixture
def operator(db) -> User:
    user = User.objects.create_user("otto-operator", password="pw-operator-123")
    user.groups.add(Group.objects.get(name="operators"))
    return user


def token_client(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {tokens.issue(user.username).token}")
    return client


@pytest.fixture
def anonymous_api() -> APIClient:
    return APIClient()


@pytest.fixture
def viewer_api(viewer) -> APIClient:
    return token_client(viewer)


@pytest.fixture
def operator_api(operator) -> APIClient:
    return token_client(operator)


@pytest.fixture
def cluster(db) -> Cluster:
    """Cluster 'alpha' with nodes alpha-1 (leader, term 1), alpha-2 and alpha-3."""
    cluster = Cluster.objects.create(name="alpha", replica_count=2)
    for index in (1, 2, 3):
        services.register_node(
            name=f"alpha-{index}",
            cluster=cluster,
            archive_location=f"postgresql://postgres@127.0.0.1:5432/tec_archive_alpha_{index}",
        )
    services.assign_leader(cluster, "alpha-1", actor=services.Actor("test"), reason="setup")
    cluster.refresh_from_db()
    return cluster
