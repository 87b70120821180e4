"""Run node worker processes on this machine (tests, benchmarks): start, stop, kill by pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class NodeProcess:
    name: str
    process: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class LocalNodes:
    """Worker processes of one or more clusters, each started with the documented command."""

    control_plane_url: str
    redis_url: str
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, NodeProcess] = field(default_factory=dict)

    def command(self, name: str) -> list[str]:
        return [
            sys.executable, "-m", "celery", "-A", "nodes.worker", "worker",
            "--node-name", name, "-Q", f"node.{name}", "-P", "solo", "-c", "1",
            "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "-l", "info",
        ]  # fmt: skip

    def start(self, name: str, secret: str, **env: str) -> NodeProcess:
        if name in self.processes and self.processes[name].alive():
            raise RuntimeError(f"node {name} is already running (pid {self.processes[name].pid})")
        self.workdir.mkdir(parents=True, exist_ok=True)
        log_path = self.workdir / f"{name}.log"
        environment = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "CONTROL_PLANE_URL": self.control_plane_url,
            "REDIS_URL": self.redis_url,
            "NODE_SECRET": secret,
            **self.env,
            **env,
        }
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                self.command(name),
                cwd=ROOT,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        node = NodeProcess(name, process, log_path)
        self.processes[name] = node
        return node

    def signal(self, name: str, signum: int) -> None:
        os.kill(self.processes[name].pid, signum)

    def stop(self, name: str, timeout: float = 20.0) -> int | None:
        """SIGTERM (the node finishes its batch), then SIGKILL after `timeout`."""
        node = self.processes[name]
        if node.alive():
            node.process.send_signal(signal.SIGTERM)
            try:
                return node.process.wait(timeout)
            except subprocess.TimeoutExpired:
                node.process.kill()
        return node.process.wait(5)

    def kill(self, name: str) -> None:
        node = self.processes[name]
        if node.alive():
            node.process.kill()
        node.process.wait(10)

    def kill_all(self) -> None:
        """SIGKILL every node and reap it: for a test's teardown, where nothing a node would
        finish on a graceful stop is looked at any more (a node must survive SIGKILL anyway)."""
        for node in self.processes.values():
            if node.alive():
                node.process.kill()
        for node in self.processes.values():
            node.process.wait(10)

    def stop_all(self, timeout: float = 20.0) -> None:
        for name in list(self.processes):
            if self.processes[name].alive():
                self.processes[name].process.send_signal(signal.SIGCONT)
                self.processes[name].process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for node in self.processes.values():
            try:
                node.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait(5)
