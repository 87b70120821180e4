"""The drill's cluster: control plane, supervisor and node workers on the private servers.

Everything runs as the documented processes do in production: the control plane as a
WSGI server (gunicorn when installed, else `manage.py runserver --noreload`), the
supervisor as `manage.py supervise`, each node as its Celery worker (dev.local),
every one a `Child` of the drill with DATABASE_URL and REDIS_URL pointing at the
private servers. The runner (controlplane.drill.runner) restarts a process that exits,
as `make run`'s runner or systemd would, and records every exit the drill did not cause.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import secrets
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from controlplane.drill.api import ApiUnavailable, ControlPlaneApi
from controlplane.drill.children import Child
from controlplane.drill.history import History
from controlplane.drill.proxy import FaultProxy
from controlplane.drill.runner import Runner
from controlplane.drill.servers import (
    PrivatePostgres,
    PrivateRedis,
    ServerError,
    free_port,
    wait_for,
)
from controlplane.topology.hosts import CONTROLPLANE, WEB_PORT, Hosts, SentinelRedis
from dev.local import ROOT, LocalNodes, NodeProcess
from wire.connection import RedisTarget

CONTROLPLANE_DB = "tec_drill_controlplane"
_LEADING = re.compile(r"leading term (\d+) from position (\d+)")
FAKETIME_SHIM = Path(__file__).resolve().parent / "faketime_shim"


@dataclass(frozen=True)
class ClusterSettings:
    """The cluster's shape and timings (fast ones: the drill wants many failovers)."""

    name: str = "drill"
    replicas: int = 2  # N followers: N + 1 nodes
    write_quorum: int = 1
    heartbeat_interval: float = 0.2
    failover_timeout: float = 2.0
    lease: float = 1.0
    supervisor_interval: float = 0.2
    restart_delay: float = 1.0  # a killed process is started again after this, as a runner would
    proxied: bool = False  # the last node talks to Redis and the control plane through fault proxies

    @property
    def node_names(self) -> list[str]:
        return [f"{self.name}-node-{index}" for index in range(1, self.replicas + 2)]


@dataclass(frozen=True)
class NodeRow:
    name: str
    role: str
    status: str
    status_message: str
    last_heartbeat: float  # epoch seconds (the control-plane database's clock), 0 if never
    archived_position: int
    last_term: int
    stalled_for: float


@dataclass(frozen=True)
class ClusterState:
    """The control plane's view, as GET /api/v1/clusters/NAME/ and /nodes/ give it."""

    leader: str | None
    term: int
    status: str
    status_message: str
    write_quorum: int
    nodes: dict[str, NodeRow]

    def describe(self) -> str:
        nodes = "; ".join(
            f"{row.name}: {row.role} {row.status} at {row.archived_position} ({row.status_message[:100]})"
            for row in self.nodes.values()
        )
        return (
            f"term {self.term}, leader {self.leader or 'none'}, status {self.status}"
            f"{': ' + self.status_message if self.status_message else ''}; {nodes}"
        )


def _epoch(stamp: str | None) -> float:
    return datetime.fromisoformat(stamp).timestamp() if stamp else 0.0


class DrillNodes(LocalNodes):
    """LocalNodes whose workers are drill Children: a process group each (so `faketime`
    and whatever it starts go together), killed and paused through that group. In a
    topology, each on its own host (`prefixes`: `ip netns exec NS`)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.children: dict[str, Child] = {}
        self.prefixes: dict[str, list[str]] = {}

    def start(self, name: str, secret: str, clock_offset: str | None = None, **env: str) -> NodeProcess:
        environment = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "CONTROL_PLANE_URL": self.control_plane_url,
            "REDIS_URL": self.redis_url,
            "NODE_SECRET": secret,
            **self.env,
            **env,
        }
        argv = [*self.prefixes.get(name, ()), *self.command(name)]
        if clock_offset:
            # A clock step moves the wall clock (CLOCK_REALTIME), as an NTP step does; the
            # monotonic clock never jumps (and Python's timed waits run on it). The shim
            # works around libfaketime breaking time.sleep (see its docstring).
            argv = ["faketime", "-f", clock_offset, *argv]
            environment["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
            environment["PYTHONPATH"] = f"{FAKETIME_SHIM}{os.pathsep}{environment['PYTHONPATH']}"
        child = self.children.get(name) or Child(name, argv, self.workdir / f"{name}.log", cwd=ROOT)
        child.argv, child.env = argv, environment
        self.children[name] = child.start()
        node = NodeProcess(name, child.process, child.log_path)
        self.processes[name] = node
        return node


class DrillCluster:
    """Starts, watches and stops the control plane, the supervisor and the nodes."""

    def __init__(self, workdir: Path, postgres: PrivatePostgres, redis: PrivateRedis | SentinelRedis,
                 settings: ClusterSettings, history: History, hosts: Hosts | None = None) -> None:  # fmt: skip
        """On one machine (`postgres` holds every database, `redis` is one server), or on
        the `hosts` of a topology: each node on its own host with its own PostgreSQL, the
        control plane on another with its database (`postgres`), Redis through Sentinel."""
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.postgres = postgres
        self.redis = redis
        self.settings = settings
        self.history = history
        self.hosts = hosts
        address = hosts.address(CONTROLPLANE) if hosts else "127.0.0.1"
        self.port = WEB_PORT if hosts else free_port()
        self.url = f"http://{address}:{self.port}"
        if hosts:
            self.archives = {name: hosts.archive_url(name) for name in settings.node_names}
            redis_env = hosts.redis_env()  # Celery's broker and backend follow (sentinel://)
        else:
            self.archives = {name: postgres.url(f"tec_drill_{name.replace('-', '_')}") for name in settings.node_names}
            redis_env = {"REDIS_URL": redis.url, "CELERY_BROKER_URL": redis.url, "CELERY_RESULT_BACKEND": redis.url}
        self.redis_target = RedisTarget.from_env(environ=redis_env)  # where the nodes' queues are
        self.env = {
            **{key: value for key, value in os.environ.items() if not key.startswith(("REDIS_", "CELERY_"))},
            "DATABASE_URL": postgres.url(CONTROLPLANE_DB),
            **redis_env,
            "PYTHONPATH": str(ROOT),
            "DJANGO_SETTINGS_MODULE": "controlplane.settings",
            "PYTHONUNBUFFERED": "1",
            "DEBUG": "false",  # served as in production
            "SECRET_KEY": secrets.token_urlsafe(32),
            "WEB_BIND": f"{address}:{self.port}",
            "ALLOWED_HOSTS": f"{address},127.0.0.1,localhost",
        }
        self.secrets: dict[str, str] = {}
        self.api: ControlPlaneApi | None = None
        self.nodes = DrillNodes(self.url, redis_env["REDIS_URL"], self.logs, env={**self.env, "NODE_SNAPSHOT_EVERY": "5000"})
        if hosts:
            self.nodes.prefixes = {name: hosts.on(name) for name in settings.node_names}
        self.clock_offsets: dict[str, str] = {}
        self.proxies: dict[str, FaultProxy] = {}
        self.control_plane: Child | None = None
        self.supervisor: Child | None = None
        self.runner = Runner(self)

    # -- setup -----------------------------------------------------------------------------

    def manage(self, *args: str, timeout: float = 300) -> str:
        """Run `manage.py ARGS` against the private servers; its output, or ServerError."""
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env,
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if result.returncode != 0:
            raise ServerError(f"manage.py {args[0]} failed ({result.returncode}):\n{(result.stdout + result.stderr)[-2000:]}")
        return result.stdout

    def prepare(self) -> None:
        """The control-plane database, its tables, and the registered cluster."""
        self.postgres.create_database(CONTROLPLANE_DB)
        self.manage("migrate", "--no-input", "-v0")
        spec = self.workdir / "cluster.json"
        out = self.workdir / "registered.json"
        spec.write_text(json.dumps({
            "cluster": self.settings.name, "replicas": self.settings.replicas,
            "write_quorum": self.settings.write_quorum, "heartbeat_interval": self.settings.heartbeat_interval,
            "failover_timeout": self.settings.failover_timeout, "lease": self.settings.lease,
            "archives": self.archives, "out": str(out),
        }))  # fmt: skip
        self.manage("shell", "-c", f"from controlplane.drill.registration import register; register({str(spec)!r})")
        registered = json.loads(out.read_text())
        self.secrets = registered["secrets"]
        self.api = ControlPlaneApi(self.url, registered["token"])
        if self.settings.proxied:
            self.proxies = {
                "redis": FaultProxy("redis", "127.0.0.1", self.redis.port).start(),
                "controlplane": FaultProxy("controlplane", "127.0.0.1", self.port).start(),
            }

    def start(self) -> None:
        on = self.hosts.on(CONTROLPLANE) if self.hosts else []
        self.control_plane = Child("controlplane", [*on, *self._web_command()], self.logs / "controlplane.log", env=self.env, cwd=ROOT)
        self.control_plane.start()
        wait_for(self._web_answers, 120, f"the control plane at {self.url} (log: {self.control_plane.log_path})", 0.2)
        self.supervisor = Child(
            "supervisor",
            [*on, sys.executable, "manage.py", "supervise", "--interval", str(self.settings.supervisor_interval)],
            self.logs / "supervisor.log", env=self.env, cwd=ROOT,
        )  # fmt: skip
        self.supervisor.start()
        for name in self.settings.node_names:
            self.start_node(name)
        self.runner.start()

    def _web_command(self) -> list[str]:
        """gunicorn as deployed when it is installed (its settings file, if the project has
        one, with WEB_BIND), else Django's runserver."""
        if importlib.util.find_spec("gunicorn") is None:
            return [sys.executable, "manage.py", "runserver", f"127.0.0.1:{self.port}", "--noreload"]
        if (ROOT / "controlplane" / "gunicorn_conf.py").exists():
            return [sys.executable, "-m", "gunicorn", "-c", "python:controlplane.gunicorn_conf", "controlplane.wsgi"]
        return [sys.executable, "-m", "gunicorn", "controlplane.wsgi:application",
                "--bind", f"127.0.0.1:{self.port}", "--workers", "2", "--threads", "8",
                "--worker-class", "gthread", "--timeout", "150", "--graceful-timeout", "5"]  # fmt: skip

    def _web_answers(self) -> bool:
        if not self.control_plane.alive():
            raise ServerError(f"the control plane exited:\n{self.control_plane.log_tail(20)}")
        try:
            self.api.cluster(self.settings.name)
            return True
        except ApiUnavailable:
            return False

    @property
    def proxied_node(self) -> str | None:
        return self.settings.node_names[-1] if self.settings.proxied else None

    def start_node(self, name: str) -> Child:
        """(Re)start a node worker: through the proxies if it is the proxied node, under
        faketime if a clock step gave it an offset."""
        env: dict[str, str] = {}
        if name == self.proxied_node:
            env["REDIS_URL"] = env["CELERY_BROKER_URL"] = f"redis://127.0.0.1:{self.proxies['redis'].port}/0"
            env["CONTROL_PLANE_URL"] = f"http://127.0.0.1:{self.proxies['controlplane'].port}"
        self.nodes.start(name, self.secrets[name], clock_offset=self.clock_offsets.get(name), **env)
        return self.nodes.children[name]

    def children(self) -> dict[str, Child]:
        found = dict(self.nodes.children)
        if self.control_plane:
            found["controlplane"] = self.control_plane
        if self.supervisor:
            found["supervisor"] = self.supervisor
        return found

    # -- observing -------------------------------------------------------------------------

    def state(self) -> ClusterState:
        cluster = self.api.cluster(self.settings.name)
        rows = {
            row["name"]: NodeRow(
                name=row["name"], role=row["role"], status=row["status"],
                status_message=row.get("status_message") or "", last_heartbeat=_epoch(row.get("last_heartbeat")),
                archived_position=int(row["archived_position"]), last_term=int(row.get("last_term") or 0),
                stalled_for=float(row.get("stalled_for") or 0.0),
            )
            for row in self.api.nodes(self.settings.name)
        }
        return ClusterState(
            leader=cluster.get("leader"), term=int(cluster["term"]), status=cluster["status"],
            status_message=cluster.get("status_message") or "", write_quorum=int(cluster["write_quorum"]), nodes=rows,
        )  # fmt: skip

    def state_or_none(self) -> ClusterState | None:
        try:
            return self.state()
        except ApiUnavailable:
            return None

    def unsettled(self, state: ClusterState | None) -> str | None:
        """Why the cluster is not settled (a leader, every node running and reporting live
        since its last start), or None when it is."""
        if state is None:
            return "the control plane does not answer"
        if state.leader is None:
            return f"no leader (term {state.term}: {state.status_message or state.status})"
        for name, child in self.nodes.children.items():
            row = state.nodes.get(name)
            if not child.alive():
                return f"{name} is not running"
            if row is None or row.status != "live" or row.last_heartbeat < child.started_at:
                what = f"{row.status}: {row.status_message[:160]}" if row else "unknown"
                return f"{name} has not reported live since its start ({what})"
        return None

    def leader_claims(self) -> list[dict]:
        """Every "leading term T" line of the node logs: which node led which term."""
        claims = []
        for name, child in self.nodes.children.items():
            with contextlib.suppress(OSError):
                for line in child.log_path.read_text(errors="replace").splitlines():
                    match = _LEADING.search(line)
                    if match:
                        claims.append({"node": name, "term": int(match[1]), "position": int(match[2])})
        return claims

    # -- the end -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Nodes first (they finish the batch in hand), then supervisor and control plane."""
        self.runner.stop()
        for child in self.nodes.children.values():
            child.signal_group(signal.SIGCONT)
            child.signal_group(signal.SIGTERM)  # all at once: they stop together
        for child in self.nodes.children.values():
            child.stop(timeout=30)
        for child in (self.supervisor, self.control_plane):
            if child is not None:
                child.stop(timeout=15)
        for proxy in self.proxies.values():
            proxy.stop()
