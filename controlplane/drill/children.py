"""Child processes the drill owns: each in a session of its own, signalled as a group, always stopped.

The drill must never touch a process it did not start, and must leave none behind on
success, failure or Ctrl-C. Every process it starts is a `Child`: started with
`start_new_session=True` (so its process group id is its pid and a wrapper such as
`faketime` takes its own children along), signalled through that group only while the
child has not been reaped (a reaped pid may be reused), and registered so that
`stop_all_children()` (called from `finally` blocks and `atexit`) stops whatever is left.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

_OWNED: list[Child] = []
_OWNED_LOCK = threading.Lock()


@dataclass(eq=False)
class Child:
    """One process (and its process group) the drill started; restartable with the same command."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    user: str | None = None  # run as this user (PostgreSQL refuses to run as root)
    process: subprocess.Popen | None = field(default=None, repr=False)
    started_at: float = 0.0  # time.time() of the last start
    starts: int = 0

    def start(self) -> Child:
        if self.alive():
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        extra: dict = {}
        if self.user is not None:
            extra = {"user": self.user, "group": self.user, "extra_groups": []}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: signals reach its children too
                **extra,
            )
        self.started_at = time.time()
        self.starts += 1
        with _OWNED_LOCK:
            if self not in _OWNED:
                _OWNED.append(self)
        return self

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def signal_group(self, signum: int) -> bool:
        """Send `signum` to the child's process group; False if it has exited already.

        Only while the child is not reaped: its pid (= its group id) is ours until then."""
        if not self.alive():
            return False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)
            return True
        return False

    def wait(self, timeout: float) -> int | None:
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> int | None:
        """SIGKILL the whole group at once and reap the child."""
        self.signal_group(signal.SIGKILL)
        return self.wait(30)

    def stop(self, timeout: float = 20.0, signum: int = signal.SIGTERM) -> int | None:
        """`signum` (SIGTERM: finish and exit), SIGKILL after `timeout`; returns the exit code."""
        if self.process is None:
            return None
        if self.alive():
            self.signal_group(signal.SIGCONT)  # a paused process cannot act on SIGTERM
            self.signal_group(signum)
            if self.wait(timeout) is None:
                self.kill()
        return self.process.poll()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def stop_all_children(timeout: float = 20.0) -> None:
    """Stop every child still running: SIGCONT + SIGTERM to all, then SIGKILL what is left."""
    with _OWNED_LOCK:
        children = [child for child in _OWNED if child.alive()]
    for child in children:
        child.signal_group(signal.SIGCONT)
        child.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for child in children:
        if child.wait(max(0.1, deadline - time.monotonic())) is None:
            child.kill()


atexit.register(stop_all_children)
