"""The drill's own PostgreSQL and Redis: started in its work dir on free ports, restartable.

The drill restarts and kills these servers as faults, so it never uses the shared ones
of the machine (127.0.0.1:5432 and :6379 belong to other work). PostgreSQL holds the
control plane's database and every node's archive database (one server, as `make run`
does), with trust authentication on 127.0.0.1 only; Redis keeps nothing on disk, so a
restart starts it empty (a flush and a restart in one).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg
import redis as redis_lib
from psycopg import sql

from controlplane.drill.children import Child


class ServerError(RuntimeError):
    """A private server could not be started; the message says what to look at."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    """Poll `predicate` until it returns something true; ServerError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise ServerError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def postgres_bin_dir() -> Path:
    """The newest installed PostgreSQL's bin directory (Debian's /usr/lib/postgresql/*/bin)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda path: int(Path(path).parent.name)
    )
    if found:
        return Path(found[-1])
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise ServerError("no PostgreSQL server binaries: install postgresql (initdb, postgres)")


class PrivatePostgres:
    """A PostgreSQL server of the drill's own (initdb in the work dir), run as a child process.

    Restart = a fast shutdown (SIGINT to the postmaster: what `pg_ctl stop -m fast` sends)
    and a start on the same port; `terminate_backends` cuts every client connection
    instead (pg_terminate_backend), the lighter of the two database faults.
    """

    def __init__(self, workdir: Path, *, name: str = "postgres", host: str = "127.0.0.1",
                 prefix: Sequence[str] = (), port: int | None = None) -> None:  # fmt: skip
        """`host`: the address it listens on (a node's own, in a topology); `prefix`: the
        command it runs under (`ip netns exec NS`), in which case the user switch is
        setpriv's, after the namespace is entered."""
        self.workdir = workdir
        self.name = name
        self.host = host
        self.bin_dir = postgres_bin_dir()
        self.port = port or free_port()
        # PostgreSQL refuses to run as root: as root, run it as the postgres user, with its
        # data in a directory of its own (the work dir's parents may be closed to it).
        self.user = "postgres" if os.geteuid() == 0 else None
        self.base = Path(tempfile.mkdtemp(prefix=f"tec-drill-{name}-")) if self.user else workdir / name
        self.data_dir = self.base / "data"
        self.socket_dir = self.base / "socket"
        server = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
                  "-k", str(self.socket_dir), "-c", f"listen_addresses={host}",
                  "-c", "log_min_messages=warning", "-c", "log_line_prefix=%m [%p] "]  # fmt: skip
        user = self.user
        if prefix and self.user:  # `ip netns exec` must run as root; the server as postgres
            server = ["setpriv", f"--reuid={self.user}", f"--regid={self.user}", "--init-groups", "--", *server]
            user = None
        self.child = Child(name, [*prefix, *server], workdir / "logs" / f"{name}.log", user=user)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{dbname}"

    def init(self) -> None:
        """initdb with trust authentication for the user postgres."""
        for directory in (self.data_dir, self.socket_dir):
            directory.mkdir(parents=True, exist_ok=True)
            if self.user:
                shutil.chown(directory, self.user, self.user)
        if self.user:
            os.chmod(self.base, 0o755)
            shutil.chown(self.base, self.user, self.user)
        extra = {"user": self.user, "group": self.user, "extra_groups": []} if self.user else {}
        result = subprocess.run(
            [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
             "--auth=trust", "--encoding=UTF8", "--no-sync", "--no-instructions"],
            capture_output=True, text=True, cwd=self.workdir, **extra,
        )  # fmt: skip
        if result.returncode != 0:
            raise ServerError(f"initdb failed ({result.returncode}): {result.stderr.strip()[-800:]}")
        if self.host != "127.0.0.1":  # trust from the topology's own network only
            with open(self.data_dir / "pg_hba.conf", "a") as hba:
                hba.write(f"host all all {self.host.rsplit('.', 1)[0]}.0/24 trust\n")

    def start(self, timeout: float = 60.0) -> None:
        self.child.start()
        self.start_wait(timeout)

    def start_wait(self, timeout: float = 60.0) -> None:
        wait_for(self._answers, timeout, f"PostgreSQL on {self.host}:{self.port} (log: {self.child.log_path})", 0.1)

    def _answers(self) -> bool:
        if not self.child.alive():
            raise ServerError(
                f"PostgreSQL exited with code {self.child.returncode()}:\n{self.child.log_tail(15)}"
            )
        try:
            with psycopg.connect(self.url(), connect_timeout=2, autocommit=True) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def create_database(self, dbname: str) -> None:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))

    def restart(self, timeout: float = 60.0) -> float:
        """Fast shutdown (clients disconnected, a clean checkpoint) and start again;
        returns how long the server was down, in seconds."""
        began = time.monotonic()
        self.child.stop(timeout=30, signum=signal.SIGINT)
        self.start(timeout)
        return time.monotonic() - began

    def terminate_backends(self) -> int:
        """pg_terminate_backend on every client connection but ours; how many were cut."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"
            ).fetchall()
        return sum(1 for (done,) in rows if done)

    def stop(self) -> None:
        self.child.stop(timeout=30, signum=signal.SIGINT)

    def remove(self) -> None:
        """Delete the server's data (stopped first)."""
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def start_command(self) -> str:
        """How an operator starts this server again on its data (to re-run a check)."""
        prefix = f"runuser -u {self.user} -- " if self.user else ""
        return f"{prefix}{self.bin_dir / 'postgres'} -D {self.data_dir} -p {self.port} -k {self.socket_dir}"


def redis_server() -> str:
    server = shutil.which("redis-server")
    if server is None:
        raise ServerError("redis-server is not installed")
    return server


class PrivateRedis:
    """A Redis server of the drill's own, keeping nothing on disk: a restart starts it empty.

    In a topology: on its own `host` address, under `prefix` (`ip netns exec NS`), and
    perhaps started as a replica of another (`replica_of`); Sentinel moves that role."""

    def __init__(self, workdir: Path, *, name: str = "redis", host: str = "127.0.0.1",
                 prefix: Sequence[str] = (), port: int | None = None,
                 replica_of: tuple[str, int] | None = None) -> None:  # fmt: skip
        self.name = name
        self.host = host
        self.port = port or free_port()
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        argv = [*prefix, redis_server(), "--port", str(self.port), "--bind", host, "--save", "",
                "--appendonly", "no", "--dir", str(self.dir), "--maxclients", "1000"]  # fmt: skip
        if host != "127.0.0.1":  # the topology's private network: no password there (yet)
            argv += ["--protected-mode", "no"]
        if replica_of:
            argv += ["--replicaof", replica_of[0], str(replica_of[1])]
        self.child = Child(name, argv, workdir / "logs" / f"{name}.log")

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def client(self) -> redis_lib.Redis:
        return redis_lib.Redis.from_url(self.url, socket_timeout=10, socket_connect_timeout=5)

    def start(self, timeout: float = 30.0) -> None:
        self.child.start()
        self.start_wait(timeout)

    def _pings(self, probe: redis_lib.Redis) -> bool:
        if not self.child.alive():
            raise ServerError(f"Redis exited with code {self.child.returncode()}:\n{self.child.log_tail(10)}")
        try:
            return bool(probe.ping())
        except redis_lib.RedisError:
            return False

    def restart(self, timeout: float = 30.0) -> float:
        """SIGKILL by pid and start again on the same port, empty; returns the seconds down."""
        began = time.monotonic()
        self.child.kill()
        deadline = time.monotonic() + timeout
        while True:  # the port may linger a moment after the kill
            self.child.start()
            try:
                self.start_wait(min(10.0, max(1.0, deadline - time.monotonic())))
                return time.monotonic() - began
            except ServerError:
                if time.monotonic() > deadline:
                    raise
                self.child.kill()
                time.sleep(0.2)

    def start_wait(self, timeout: float) -> None:
        probe = redis_lib.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=2)
        try:
            wait_for(lambda: self._pings(probe), timeout, f"Redis on port {self.port} (log: {self.child.log_path})")
        finally:
            probe.close()

    def stop(self) -> None:
        self.child.stop(timeout=10)


class PrivateSentinel:
    """A Redis Sentinel of the drill's own (`redis-server CONF --sentinel`), watching one
    primary under `master` with `quorum` votes to call it down; fast timings, for drills."""

    def __init__(self, workdir: Path, *, name: str, master: str, primary: tuple[str, int], quorum: int,
                 host: str = "127.0.0.1", prefix: Sequence[str] = (), port: int | None = None,
                 down_after_ms: int = 1000, failover_timeout_ms: int = 6000) -> None:  # fmt: skip
        self.name = name
        self.host = host
        self.port = port or free_port()
        self.master = master
        directory = workdir / name
        directory.mkdir(parents=True, exist_ok=True)
        self.config = directory / "sentinel.conf"  # Sentinel rewrites it: what it learnt
        self.config.write_text("\n".join([
            f"port {self.port}", f"bind {host}", f"dir {directory}", "protected-mode no",
            f"sentinel monitor {master} {primary[0]} {primary[1]} {quorum}",
            f"sentinel down-after-milliseconds {master} {down_after_ms}",
            f"sentinel failover-timeout {master} {failover_timeout_ms}",
            f"sentinel parallel-syncs {master} 1", "",
        ]))  # fmt: skip
        self.child = Child(name, [*prefix, redis_server(), str(self.config), "--sentinel"], workdir / "logs" / f"{name}.log")

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def client(self) -> redis_lib.Redis:
        return redis_lib.Redis(self.host, self.port, socket_timeout=2, socket_connect_timeout=2)

    def start(self, timeout: float = 30.0) -> None:
        self.child.start()
        probe = self.client()
        try:
            wait_for(lambda: self._pings(probe), timeout, f"Sentinel {self.name} (log: {self.child.log_path})")
        finally:
            probe.close()

    def _pings(self, probe: redis_lib.Redis) -> bool:
        if not self.child.alive():
            raise ServerError(f"Sentinel {self.name} exited:\n{self.child.log_tail(10)}")
        try:
            return bool(probe.ping())
        except redis_lib.RedisError:
            return False

    def primary(self) -> tuple[str, int] | None:
        """The primary this Sentinel names now, or None if it does not answer."""
        probe = self.client()
        try:
            host, port = probe.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master)
            return host.decode(), int(port)
        except (redis_lib.RedisError, TypeError, ValueError):
            return None
        finally:
            probe.close()

    def stop(self) -> None:
        self.child.stop(timeout=10)
