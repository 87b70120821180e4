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
from django.db import transaction
from django.utils import timezone
from psycopg import sql

from archive import PostgresEventLog
from controlplane.clusters import services
from controlplane.clusters.models import Cluster, Node
from dev.local import LocalNodes
from nodes.engine import AddInstrument, Engine, decode_events
from wire.client import ClusterClient
from wire.keys import keys

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

    def start_all(self) -> list[str]:
        """Start every node and wait until each reports live; returns their names."""
        names = list(self.secrets)
        for name in names:
            self.start(name)
        self.wait_live(*names)
        return names

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

    def make(size: int = 3, write_quorum: int = 1, **env: str) -> TestCluster:
        """`size` nodes (the first leads), so N = size - 1 replicas, and write quorum W."""
        redis = redis_lib.Redis.from_url(settings.REDIS_URL)
        name = f"t{uuid.uuid4().hex[:10]}"
        # One transaction: a supervisor running meanwhile never sees a leaderless term 0.
        with transaction.atomic():
            cluster = Cluster.objects.create(
                name=name,
                replica_count=size - 1,
                write_quorum=write_quorum,
                term_write_quorum=write_quorum,
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
        test_cluster.nodes.kill_all()  # the test is over: a graceful stop took 1-3 s a test
        redis = test_cluster.redis
        try:
            for client in test_cluster.clients:
                client.close()
            for key in redis.scan_iter(match=keys(test_cluster.name).pattern, count=1000):
                redis.delete(key)
        except redis_lib.RedisError:
            pass  # a private Redis already stopped
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
            for location in test_cluster.locations.values():
                dbname = location.rsplit("/", 1)[1]
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
                )


@pytest.fixture
def supervisor(live_server):
    """The supervisor's cycle every 0.2 s in a thread of the test process (its database)."""
    import threading

    from django.db import connection

    from controlplane.clusters.supervisor import run_all

    stop = threading.Event()
    log: list[str] = []

    def loop() -> None:
        try:
            while not stop.is_set():
                log.extend(status for status in run_all() if "no action" not in status)
                stop.wait(0.2)
        finally:
            connection.close()

    thread = threading.Thread(target=loop, name="test-supervisor", daemon=True)
    thread.start()
    yield log
    stop.set()
    thread.join(5)


@pytest.fixture
def private_redis(tmp_path, settings):
    """A Redis server of this test's own (to flush or kill), on a free port; the control
    plane and the nodes started after this fixture use it."""
    import shutil
    import socket
    import subprocess

    from controlplane.clusters import streams

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    client = redis_lib.Redis.from_url(url)
    wait_until(lambda: _pings(client), 10, f"the private Redis on port {port}")
    settings.REDIS_URL = url
    streams.connection.cache_clear()
    yield url
    server.terminate()  # by its own pid
    server.wait(10)
    streams.connection.cache_clear()


def _pings(client) -> bool:
    try:
        return bool(client.ping())
    except redis_lib.RedisError:
        return False


class SteadyLoad:
    """A client thread that keeps submitting orders and retries each batch, with the same
    sequence numbers, until it is committed: what a real client does across a failover."""

    def __init__(self, cluster: TestCluster, symbol: str = "ACME", batch: int = 20) -> None:
        import threading

        self.client = cluster.client(timeout=2.0)
        self.symbol = symbol
        self.batch = batch
        self.committed: dict[int, object] = {}  # client_seq -> CommandResult
        self.batches: list[tuple[float, int]] = []  # (monotonic time, highest position) per batch
        self.retries = 0
        self.errors: list[str] = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.run, name="steady-load", daemon=True)

    def start(self) -> SteadyLoad:
        self.thread.start()
        return self

    def run(self) -> None:
        from nodes.engine import PlaceOrder
        from wire.client import CommitTimeout

        client, counter = self.client, 0
        while not self.stop_event.is_set():
            commands = []
            for _ in range(self.batch):
                counter += 1
                commands.append(
                    PlaceOrder(client_id=client.client_id, client_seq=client.next_seq(),
                               account=f"acct{counter % 4}", symbol=self.symbol,
                               side=(1, 2)[counter % 2], qty=1 + counter % 7,
                               price=1000 + (counter % 11) - 5)
                )  # fmt: skip
            while True:
                try:
                    results = client.submit_many(commands, timeout=2.0)
                    break
                except CommitTimeout:
                    self.retries += 1
                    if self.stop_event.is_set():
                        return
                except Exception as error:  # Redis flushed mid-call, etc.: retry like a client
                    self.errors.append(repr(error))
                    self.retries += 1
                    time.sleep(0.2)
                    if self.stop_event.is_set():
                        return
            for command, result in zip(commands, results, strict=True):
                self.committed[command.client_seq] = result
            self.batches.append((time.monotonic(), max(r.first_position for r in results)))
            time.sleep(0.01)

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(30)

    def wait_for(self, count: int, timeout: float = 60.0) -> None:
        wait_until(lambda: len(self.committed) >= count, timeout, f"{count} committed commands")


def first_commit_of_term(load: SteadyLoad, location: str, term: int) -> float | None:
    """When the load first got a result at a position the given term wrote."""
    from nodes.rejoin import term_ranges

    with PostgresEventLog(location) as log:
        starts = [first for t, first, _last in term_ranges(log) if t == term]
    if not starts:
        return None
    return next((at for at, position in load.batches if position >= starts[0]), None)


def assert_each_committed_command_once(load: SteadyLoad, location: str) -> None:
    """Every command that got a committed result was executed exactly once in the log."""
    from nodes.engine import OrderAccepted, OrderRejected

    executions: dict[int, list[int]] = {}
    with PostgresEventLog(location) as log:
        for batch in log.read(1):
            for entry, event in zip(batch, decode_events([e.payload for e in batch]), strict=True):
                if isinstance(event, OrderAccepted | OrderRejected) and event.client_id == load.client.client_id:
                    executions.setdefault(event.client_seq, []).append(entry.position)
    assert load.committed, "the load committed nothing"
    for seq, result in load.committed.items():
        positions = executions.get(seq, [])
        assert len(positions) == 1, f"command {seq} executed {len(positions)} times"
        assert positions[0] == result.first_position, f"command {seq} answered from another position"


def assert_committed_results_in(load_or_results, location: str) -> int:
    """Every result a client got as committed (a SteadyLoad's, or CommandResults) is in the
    archive at `location`, at its position, with the same payloads; returns how many."""
    results = list(load_or_results.committed.values()) if hasattr(load_or_results, "committed") else list(load_or_results)
    assert results, "no committed result to check"
    by_position = {entry[0]: entry for entry in archive_entries(location)}
    for result in results:
        for offset, payload in enumerate(result.payloads):
            position = result.first_position + offset
            entry = by_position.get(position)
            assert entry is not None, (
                f"a committed result (position {result.first_position}, {len(result.payloads)} events) "
                f"is lost: position {position} is not in {location} (it ends at {max(by_position, default=0)})"
            )
            assert entry[4] == payload, (
                f"a committed result differs from the log: position {position} of {location} holds "
                f"another event (term {entry[1]}) than the one reported committed"
            )
    return len(results)


def assert_archives_agree(*locations: str) -> None:
    """The archives hold the same entries up to the shortest of them."""
    logs = [archive_entries(location) for location in locations]
    shortest = min(len(log) for log in logs)
    for location, log in zip(locations[1:], logs[1:], strict=True):
        assert log[:shortest] == logs[0][:shortest], f"{location} disagrees with {locations[0]}"


def process_state(pid: int) -> str:
    """The kernel's one-letter state of a process (R, S, T for stopped, Z, ...), '' if gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def pause(cluster: TestCluster, *names: str) -> None:
    """SIGSTOP the nodes and wait until the kernel has stopped every one of them."""
    import signal

    for name in names:
        cluster.nodes.signal(name, signal.SIGSTOP)
    for name in names:
        pid = cluster.nodes.processes[name].pid
        wait_until(lambda pid=pid: process_state(pid) == "T", 10, f"node {name} (pid {pid}) to stop")


def resume(cluster: TestCluster, *names: str) -> None:
    import signal

    for name in names:
        cluster.nodes.signal(name, signal.SIGCONT)


def wait_leader(cluster: TestCluster, *, above_term: int, among, timeout: float = 30.0) -> str:
    """Wait until a leader among `among` holds a term above `above_term`; its name."""
    from controlplane.clusters.models import RoleChange

    def elected():
        row = Cluster.objects.select_related("leader").get(name=cluster.name)
        if row.term > above_term and row.leader is not None:
            if row.leader.name not in among:
                change = RoleChange.objects.filter(cluster=row, term=row.term).first()
                raise AssertionError(
                    f"{row.leader.name} elected in term {row.term}, expected one of {sorted(among)}: "
                    f"{change.reason if change else ''}"
                )
            return row.leader.name
        return None

    return wait_until(
        elected, timeout,
        lambda: f"a leader among {sorted(among)} above term {above_term} "
        f"(cluster: {cluster.cluster.status}: {cluster.cluster.status_message})",
    )  # fmt: skip


@dataclass
class RestartableRedis:
    """A private Redis server (no persistence) that a test can stop and start again on
    the same port: what a Redis restart looks like to the nodes (every key gone)."""

    port: int
    workdir: object
    url: str
    server: object = None

    def start(self) -> None:
        import shutil
        import subprocess

        self.server = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        client = redis_lib.Redis.from_url(self.url)
        try:
            wait_until(lambda: _pings(client), 10, f"the private Redis on port {self.port}")
        finally:
            client.close()

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()  # by its own pid
            self.server.wait(10)

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()


@pytest.fixture
def restartable_redis(tmp_path, settings) -> Iterator[RestartableRedis]:
    """Like private_redis (the control plane and the nodes started after it use it), and
    the test may restart it on the same port."""
    import socket

    from controlplane.clusters import streams

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = RestartableRedis(port, workdir, f"redis://127.0.0.1:{port}/0")
    server.start()
    settings.REDIS_URL = server.url
    streams.connection.cache_clear()
    yield server
    server.stop()
    streams.connection.cache_clear()
