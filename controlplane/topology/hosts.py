"""The servers of a many-host topology: each node's own PostgreSQL, the control plane's, and
Redis as a primary, a replica and three Sentinels, every one on its own host (namespace).

    controlplane   the control plane (gunicorn :8000, the supervisor) and its PostgreSQL :5432
    NODE (each)    the node's Celery worker and its own PostgreSQL :5432 (its archive)
    redis-1        Redis :6379 (the first primary) and Sentinel :26379
    redis-2        Redis :6379 (a replica of redis-1) and Sentinel :26379
    sentinel-3     Sentinel :26379 (the third vote: two of three call the primary down)
    clients        whatever submits commands: the drill's load, an operator's shell

`Hosts.start()` makes the namespaces, moves the calling thread onto the clients' host
(setns: threads it starts later are born there, and so are its child processes) and
starts the servers; the cluster's processes
(control plane, supervisor, nodes) are started by controlplane.drill.cluster on the
addresses this gives. `stop()` stops every server by its pid, then deletes the
namespaces; both run from `finally` blocks and on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from controlplane.drill.servers import PrivatePostgres, PrivateRedis, PrivateSentinel, ServerError
from controlplane.topology import netns
from controlplane.topology.netns import Network
from wire.connection import RedisTarget

CONTROLPLANE = "controlplane"
CLIENTS = "clients"
REDIS_HOSTS = ("redis-1", "redis-2")
SENTINEL_ONLY = "sentinel-3"
SENTINEL_MASTER = "tec"
POSTGRES_PORT, REDIS_PORT, SENTINEL_PORT, WEB_PORT = 5432, 6379, 26379, 8000


@dataclass
class Hosts:
    """The network and the servers on it, for the nodes `node_names`."""

    workdir: Path
    node_names: list[str]
    network: Network | None = None

    def __post_init__(self) -> None:
        self.network = self.network or Network()
        self.postgres: dict[str, PrivatePostgres] = {}  # host -> its PostgreSQL
        self.redis: dict[str, PrivateRedis] = {}
        self.sentinels: list[PrivateSentinel] = []
        self._home: int | None = None  # the caller's own network namespace, to go back to

    @property
    def hosts(self) -> list[str]:
        return [CONTROLPLANE, *self.node_names, *REDIS_HOSTS, SENTINEL_ONLY, CLIENTS]

    def address(self, host: str) -> str:
        return self.network.addresses[host]

    def on(self, host: str) -> list[str]:
        return self.network.on(host)

    # -- start ---------------------------------------------------------------------------

    def start(self) -> None:
        """Call from the main thread before it starts others: it moves onto the clients' host."""
        for host in self.hosts:
            self.network.add(host)
        self._home = netns.current()
        netns.enter(self.network.namespace(CLIENTS))
        for host in (CONTROLPLANE, *self.node_names):
            server = PrivatePostgres(self.workdir, name=f"postgres-{host}", host=self.address(host),
                                     prefix=self.on(host), port=POSTGRES_PORT)  # fmt: skip
            self.postgres[host] = server
            server.init()
            server.child.start()
        primary = PrivateRedis(self.workdir, name=REDIS_HOSTS[0], host=self.address(REDIS_HOSTS[0]),
                               prefix=self.on(REDIS_HOSTS[0]), port=REDIS_PORT)  # fmt: skip
        replica = PrivateRedis(self.workdir, name=REDIS_HOSTS[1], host=self.address(REDIS_HOSTS[1]),
                               prefix=self.on(REDIS_HOSTS[1]), port=REDIS_PORT, replica_of=primary.address)  # fmt: skip
        self.redis = {REDIS_HOSTS[0]: primary, REDIS_HOSTS[1]: replica}
        for server in self.postgres.values():  # started above, in parallel; now wait for each
            server.start_wait()
        primary.start()
        replica.start()
        for index, host in enumerate((*REDIS_HOSTS, SENTINEL_ONLY), start=1):
            sentinel = PrivateSentinel(self.workdir, name=f"sentinel-{index}", master=SENTINEL_MASTER,
                                       primary=primary.address, quorum=2, host=self.address(host),
                                       prefix=self.on(host), port=SENTINEL_PORT)  # fmt: skip
            sentinel.start()
            self.sentinels.append(sentinel)
        self.wait_replicated()

    def wait_replicated(self, timeout: float = 60.0) -> None:
        """Until every Sentinel names one primary and it has a replica online."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            primary = self.primary_name()
            if primary is not None and self.redis[primary].client().info("replication").get("connected_slaves", 0) >= 1:
                return
            time.sleep(0.2)
        raise ServerError(f"Redis replication did not form within {timeout:.0f} s (logs in {self.workdir / 'logs'})")

    # -- Redis ---------------------------------------------------------------------------

    def redis_target(self) -> RedisTarget:
        return RedisTarget("redis://primary/0", tuple(s.address for s in self.sentinels), SENTINEL_MASTER)

    def redis_env(self) -> dict[str, str]:
        """The variables that make any of our processes find Redis through the Sentinels."""
        target = self.redis_target()
        return {
            "REDIS_URL": target.url,
            "REDIS_SENTINELS": ",".join(f"{host}:{port}" for host, port in target.sentinels),
            "REDIS_SENTINEL_MASTER": SENTINEL_MASTER,
        }

    def primary_name(self) -> str | None:
        """The Redis host every answering Sentinel names as primary, if they agree."""
        named = {sentinel.primary() for sentinel in self.sentinels} - {None}
        if len(named) != 1:
            return None
        address = named.pop()
        return next((host for host, server in self.redis.items() if server.address == address), None)

    def redis_addresses(self) -> tuple[str, ...]:
        """Every address of the Redis service: both servers and all three Sentinels."""
        return tuple(sorted({self.address(host) for host in (*REDIS_HOSTS, SENTINEL_ONLY)}))

    # -- PostgreSQL ----------------------------------------------------------------------

    def archive_url(self, node: str) -> str:
        return self.postgres[node].url(f"tec_{node.replace('-', '_')}")

    def controlplane_database(self, dbname: str) -> str:
        self.postgres[CONTROLPLANE].create_database(dbname)
        return self.postgres[CONTROLPLANE].url(dbname)

    # -- where everything is ---------------------------------------------------------------

    def describe(self) -> list[tuple[str, str, str, str]]:
        """(host, namespace, address, what runs there) per host."""
        rows = []
        for host in self.hosts:
            what = {
                CONTROLPLANE: f"control plane :{WEB_PORT} (gunicorn), supervisor, PostgreSQL :{POSTGRES_PORT}",
                REDIS_HOSTS[0]: f"Redis :{REDIS_PORT}, Sentinel :{SENTINEL_PORT}",
                REDIS_HOSTS[1]: f"Redis :{REDIS_PORT} (replica), Sentinel :{SENTINEL_PORT}",
                SENTINEL_ONLY: f"Sentinel :{SENTINEL_PORT}",
                CLIENTS: "clients (the drill's load, `manage.py submit`)",
            }.get(host, f"node worker, its archive's PostgreSQL :{POSTGRES_PORT}")
            rows.append((host, self.network.namespace(host), self.address(host), what))
        return rows

    # -- the end -------------------------------------------------------------------------

    def stop(self) -> list[str]:
        """Stop every server by its pid, then delete the namespaces; the problems met."""
        problems = []
        for server in (*self.sentinels, *self.redis.values(), *self.postgres.values()):
            with contextlib.suppress(Exception):
                server.stop()
            if server.child.alive():
                problems.append(f"{server.name} (pid {server.child.pid}) did not stop")
        if self._home is not None:
            with contextlib.suppress(Exception):
                netns.leave(self._home)
                os.close(self._home)
            self._home = None
        problems.extend(self.network.destroy())
        return problems

    def remove_data(self) -> None:
        for server in self.postgres.values():
            with contextlib.suppress(Exception):
                server.remove()


class SentinelRedis:
    """Redis as the drill sees it on a topology: whichever server the Sentinels name primary."""

    def __init__(self, hosts: Hosts) -> None:
        self.hosts = hosts
        self.target = hosts.redis_target()

    @property
    def url(self) -> str:
        return self.target.url

    def client(self):
        return self.target.client(socket_timeout=10, socket_connect_timeout=5)

    def kill_primary(self, timeout: float = 60.0) -> tuple[str, str, float, float]:
        """SIGKILL the primary by its pid, wait for the Sentinels to promote the replica,
        then start the killed server again, empty (the Sentinels make it a replica of the
        new primary); (old primary, new primary, seconds until the promotion, time.time()
        of the kill)."""
        hosts = self.hosts
        old = hosts.primary_name()
        if old is None:
            raise ServerError("the Sentinels do not agree on a primary")
        hosts.redis[old].child.kill()
        killed_at, began = time.time(), time.monotonic()
        deadline = began + timeout
        while (new := hosts.primary_name()) in (None, old):
            if time.monotonic() > deadline:
                raise ServerError(f"no Sentinel failover within {timeout:.0f} s of killing {old}")
            time.sleep(0.1)
        promoted = time.monotonic() - began
        hosts.redis[old].start()
        hosts.wait_replicated(timeout)
        return old, new, promoted, killed_at
