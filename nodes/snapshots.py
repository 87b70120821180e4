"""When the node snapshots its state: every NODE_SNAPSHOT_EVERY positions, or when asked.

The loop thread starts and follows the snapshot child (nodes/snapshotter.py) between two
batches; another thread (a `take_snapshot` request, nodes/peer.py) only asks and waits.
"""

from __future__ import annotations

import logging
import threading

from nodes.adapters import Adapters
from nodes.snapshotter import Snapshotter
from nodes.state import NodeState

log = logging.getLogger("nodes.runtime")


class Snapshots:
    """The node's snapshot schedule and the child in flight."""

    def __init__(self, every: int) -> None:
        self.every = every  # positions between automatic snapshots (0: only when asked)
        self.requested = threading.Event()
        self.done = threading.Event()
        self.last_status = ""
        self.snapshotter: Snapshotter | None = None  # forks the snapshot children
        self._next_at = 0  # position from which an automatic snapshot is due

    def open(self, location: str, adapters: Adapters) -> None:
        self.snapshotter = Snapshotter(location, adapters)

    def recovered(self, state: NodeState) -> None:
        """After a rebuild from the archive: the next automatic one counts from the latest."""
        self._next_at = state.last_snapshot_position + self.every

    def request(self, timeout: float) -> str:
        """From another thread: ask the loop for a snapshot between two batches; wait for it."""
        self.done.clear()
        self.requested.set()
        if not self.done.wait(timeout):
            return "snapshot still pending after the timeout"
        return self.last_status

    def after_batch(self, state: NodeState) -> None:
        if self.every and state.position >= self._next_at and not self.snapshotter.busy:
            self.take(state)

    def between_cycles(self, state: NodeState | None) -> None:
        """Start a requested snapshot, and follow the child in flight."""
        if self.requested.is_set():
            self.take(state)
        self.poll(state)

    def take(self, state: NodeState) -> None:
        """Fork a child that writes the snapshot (nodes/snapshotter.py): the loop pays for
        the fork only, and goes on at once; `poll` follows the child."""
        self.requested.clear()
        if self.snapshotter.busy:
            return  # the request is answered when the snapshot in flight is done
        self._next_at = state.position + self.every
        log.info("%s", self.snapshotter.start(state.engine))

    def poll(self, state: NodeState | None) -> None:
        snapshotter = self.snapshotter
        if snapshotter is None or state is None or not snapshotter.busy:
            return
        done = snapshotter.poll(state.engine, state.archived)
        if done is not None:
            self._finished(state, done)

    def finish(self, state: NodeState | None) -> None:
        """At stop: a child whose position is archived completes; any other is abandoned."""
        if self.snapshotter is not None and self.snapshotter.busy:
            done = self.snapshotter.finish(state.engine, lambda: state.archived, timeout=60.0)
            if done is not None:
                self._finished(state, done)

    def _finished(self, state: NodeState, done) -> None:
        if done.ok:
            state.last_snapshot_position = max(state.last_snapshot_position, done.position)
            log.info("%s", done.status)
        else:
            log.warning("%s", done.status)
        self.last_status = done.status
        self.done.set()
