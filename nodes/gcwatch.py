"""Garbage-collector pauses of a node, measured (DESIGN §6: the GC sets the latency tail)."""

from __future__ import annotations

import gc
import logging
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
