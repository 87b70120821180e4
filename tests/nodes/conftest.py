"""End-to-end fixtures: a live control plane and real node worker processes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import psycopg
import pytest
import redis as redis_lib
from django.conf import settings
from django.utils import timezone
from psycopg import sql

from archive import PostgresEventLog, keys
from controlplane.clusters import services
from controlplane.clusters.models import Cluster, Node
from nodes.client import ClusterClient
from nodes.engine import AddInstrument, Engine, decode_events
from nodes.local import LocalNodes

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"


def wait_until(predicate: Callable[[], object], timeout: float, what, interval: float = 0.1):
    """Poll until predicate() is true; `what` (a string, or a callable for a late
    message such as a log tail) says what we were waiting for."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what() if callable(what) else what}"
            )
        time.sleep(interval)


def archive_entries(location: str) -> list[tuple]:
    with PostgresEventLog(location) as log:
        return [tuple(entry) for batch in log.read(1) for entry in batch]


def archive_digest(location: str) -> tuple[int, str]:
    """Replay an archive into a fresh engine in this process: (position, digest)."""
    engine = Engine()
    with PostgresEventLog(location) as log:
        for batch in log.read(1):
            engine.apply_batch(decode_events([entry.payload for entry in batch]))
    return engine.position, engine.digest()


@dataclass
class TestCluster:
    """A registered cluster, its nodes' secrets and archives, and the running processes."""

    name: str
    nodes: LocalNodes
    secrets: dict[str, str]
    locations: dict[str, str]
    redis: redis_lib.Redis
    clients: list[ClusterClient] = field(default_factory=list)
    started_at: dict = field(default_factory=dict)

    @property
    def cluster(self) -> Cluster:
        return Cluster.objects.get(name=self.name)

    def start(self, node: str, **env: str):
        self.started_at[node] = timezone.now()
        return self.nodes.start(node, self.secrets[node], **env)

    def client(self, timeout: float = 10.0) -> ClusterClient:
        client = ClusterClient(self.name, self.redis, timeout=timeout)
        self.clients.append(client)
        return client

    def row(self, node: str) -> Node:
        return Node.objects.get(name=node)

    def is_live(self, name: str) -> bool:
        """Live, as reported by the process started last (not an older heartbeat)."""
        row = self.row(name)
        return (
            row.status == "live"
            and row.last_heartbeat is not None
            and row.last_heartbeat > self.started_at[name]
            and self.nodes.processes[name].alive()
        )

    def wait_live(self, *names: str, timeout: float = 60.0) -> None:
        for name in names:
            wait_until(
                lambda name=name: self.is_live(name),
                timeout,
                lambda name=name: f"node {name} to report live\n{self.nodes.processes[name].log_tail()}",
            )

    def wait_applied(self, position: int, *names: str, timeout: float = 60.0) -> None:
        for name in names:
            wait_until(
                lambda name=name: self.row(name).applied_position >= position,
                timeout,
                lambda name=name: f"node {name} to apply position {position}\n"
                f"{self.nodes.processes[name].log_tail()}",
            )

    def add_instrument(self, client: ClusterClient, symbol: str = "ACME") -> None:
        result = client.submit(
            AddInstrument(client_id=client.client_id, client_seq=client.next_seq(), symbol=symbol)
        )
        assert type(result.events[0]).__name__ == "InstrumentAdded"


@pytest.fixture
def make_cluster(live_server, tmp_path) -> Iterator[Callable[..., TestCluster]]:
    made: list[TestCluster] = []
    redis = redis_lib.Redis.from_url(settings.REDIS_URL)

    def make(size: int = 3, replica_count: int = 2, **env: str) -> TestCluster:
        name = f"t{uuid.uuid4().hex[:10]}"
        cluster = Cluster.objects.create(
            name=name,
            replica_count=replica_count,
            heartbeat_interval=0.2,
            failover_timeout=2.0,
            lease=1.0,
        )
        secrets, locations = {}, {}
        for index in range(1, size + 1):
            node = f"{name}-{index}"
            locations[node] = f"{PG_SERVER}/tec_test_{name}_{index}"
            _, secrets[node] = services.register_node(
                name=node, cluster=cluster, archive_location=locations[node]
            )
        services.assign_leader(cluster, f"{name}-1", actor=services.Actor("test"), reason="setup")
        nodes = LocalNodes(
            control_plane_url=live_server.url,
            redis_url=settings.REDIS_URL,
            workdir=tmp_path / name,
            env={"NODE_SNAPSHOT_EVERY": "0", **env},
        )
        made.append(TestCluster(name, nodes, secrets, locations, redis))
        return made[-1]

    yield make

    for test_cluster in made:
        test_cluster.nodes.stop_all()
        for client in test_cluster.clients:
            client.close()
        for key in redis.scan_iter(match=keys(test_cluster.name).pattern, count=1000):
            redis.delete(key)
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
            for location in test_cluster.locations.values():
                dbname = location.rsplit("/", 1)[1]
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
                )
