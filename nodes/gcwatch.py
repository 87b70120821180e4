"""Garbage-collector pauses of a node, measured (DESIGN §6: the GC sets the latency tail)."""

from __future__ import annotations

import gc
import logging
import sys
import time

log = logging.getLogger(__name__)

LOUD_PAUSE_S = 0.020  # a pause this long is logged: it shows in the clients' p99


class GcWatch:
    """Times every collection through gc.callbacks; keeps the longest pause and a count."""

    def __init__(self) -> None:
        self.started = 0.0
        self.max_pause = 0.0
        self.collections = 0
        self.total = 0.0
        self.ignoring = False  # set around the node's own gc.collect() (start-up, rebuild)

    def install(self) -> GcWatch:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)
        return self

    def _callback(self, phase: str, info: dict) -> None:
        if self.ignoring:
            return
        if phase == "start":
            self.started = time.perf_counter()
            return
        pause = time.perf_counter() - self.started
        self.collections += 1
        self.total += pause
        if pause > self.max_pause:
            self.max_pause = pause
        if pause >= LOUD_PAUSE_S:
            log.warning(
                "GC pause of %.1f ms (generation %d, %d objects collected)",
                pause * 1000, info.get("generation", -1), info.get("collected", 0),
            )  # fmt: skip

    def summary(self) -> str:
        return (
            f"{self.collections} collections, longest pause {self.max_pause * 1000:.1f} ms, "
            f"{self.total * 1000:.0f} ms in all"
        )

    def apply_policy(self, policy: str) -> None:
        """After a rebuild, before taking a role: the node's GC policy (NODE_GC)."""
        # The loop, archive and commit threads hand work to each other; a thread woken by
        # I/O (a commit done, an ack in) waits for the running one to give up the GIL,
        # 5 ms by default. 0.5 ms keeps those hand-offs off the latency path.
        sys.setswitchinterval(0.0005)
        # Full collections over a large book pause the loop for 100+ ms (DESIGN §6):
        # freeze everything built by the replay into the permanent generation, and
        # make young collections rarer. "off" disables the collector entirely.
        if policy == "default":
            return
        self.ignoring = True  # this collection is on purpose, between two roles
        try:
            gc.collect()
        finally:
            self.ignoring = False
        gc.freeze()
        if policy == "freeze":
            gc.set_threshold(50_000, 50, 1000)
        else:
            gc.disable()
