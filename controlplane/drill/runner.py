"""The drill's process runner: restarts what exits, as `make run`'s runner or systemd would."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controlplane.drill.children import Child
    from controlplane.drill.cluster import DrillCluster

log = logging.getLogger("controlplane.drill")


@dataclass
class Runner:
    """Restarts every process that exits, after `restart_delay`, as a process runner would.

    The drill marks the exits it causes (`expect_exit`) and the processes it restarts
    itself (`hold`); any other exit is recorded in the history with its code and log. A
    node that exits with status 0 on its own is what the no-wedge issue calls dying
    quietly (make run's runner leaves it stopped): recorded as such, and restarted all
    the same so that the drill goes on.
    """

    cluster: DrillCluster
    expected: dict[str, float] = field(default_factory=dict)  # name -> restart delay
    held: set[str] = field(default_factory=set)
    exits: list[dict] = field(default_factory=list)
    _due: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="drill-runner", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def expect_exit(self, name: str, restart_after: float | None = None) -> None:
        """The drill is about to end `name`: not an exit to report; restart it after the delay."""
        with self._lock:
            self.expected[name] = self.cluster.settings.restart_delay if restart_after is None else restart_after

    @contextlib.contextmanager
    def hold(self, name: str):
        """The drill restarts `name` itself meanwhile (a clock step): the runner keeps off."""
        with self._lock:
            self.held.add(name)
        try:
            yield
        finally:
            with self._lock:
                self.held.discard(name)
                self._due.pop(name, None)

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            for name, child in self.cluster.children().items():
                with self._lock:
                    if name in self.held or child.alive():
                        continue
                    if name not in self._due:
                        self._exited(name, child)
                        continue
                    if time.monotonic() < self._due[name]:
                        continue
                    del self._due[name]
                try:
                    if name in self.cluster.nodes.children:
                        self.cluster.start_node(name)
                    else:
                        child.start()
                    self.cluster.history.record("restart", process=name, pid=child.pid)
                except Exception as error:  # try again after the delay
                    log.warning("could not restart %s: %s", name, error)
                    with self._lock:
                        self._due[name] = time.monotonic() + self.cluster.settings.restart_delay

    def _exited(self, name: str, child: Child) -> None:
        """Called with the lock held, once per exit."""
        code = child.returncode()
        expected = name in self.expected
        delay = self.expected.pop(name, self.cluster.settings.restart_delay)
        self._due[name] = time.monotonic() + delay
        if expected:
            return
        quiet = code == 0 and name in self.cluster.nodes.children
        record = self.cluster.history.record(
            "exit", process=name, code=code, quiet=quiet, log=str(child.log_path), tail=child.log_tail(12)
        )
        self.exits.append(record)
        log.warning("%s exited on its own with code %s (log: %s); restarting it", name, code, child.log_path)
