"""Heartbeats and the lease: the node's report to the control plane, and the answer it keeps.

A thread of its own sends the report every heartbeat interval and swaps in the answer
(`view`, an immutable value the loop and the roles read). Every answered heartbeat renews
the leader's lease, measured from when it was sent (nodes.protocol.lease), so a leader
that cannot reach the control plane stops taking commands before another is elected.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import redis as redis_lib

from archive import get_fence
from nodes.control import ClusterView, ControlPlane, ControlPlaneError, NodeRefused
from nodes.protocol.lease import Lease

if TYPE_CHECKING:
    from nodes.runtime import Node

log = logging.getLogger("nodes.runtime")

SOFTWARE_VERSION = "0.1.0"


class Heartbeats:
    """Reports the node and keeps the control plane's answer and the lease."""

    def __init__(self, node: Node, control: ControlPlane) -> None:
        self.node = node
        self.control = control
        self.view: ClusterView | None = None
        self.lease = Lease(duration=0.0)  # renewed by every answered heartbeat, from its send time
        # Reports are numbered (boot of the archive, sequence): the control plane drops one
        # that arrives after a later one (a slow request, a previous process's), never
        # taking it for news.
        self._seq = itertools.count(1)
        self.thread: threading.Thread | None = None

    def send(self) -> ClusterView:
        """One heartbeat now: report, keep the answer, renew the lease."""
        sent_at = time.monotonic()
        self.view = self.control.heartbeat(self.report())
        self.lease.renewed(sent_at)
        return self.view

    def leading_allowed(self, view: ClusterView) -> bool:
        """The lease of `view`'s leadership holds now."""
        self.lease.duration = view.lease
        return self.lease.valid(time.monotonic())

    def first(self) -> ClusterView:
        """The first answer, waiting for the control plane as long as it takes."""
        delay = 0.2
        while not self.node.stopping.is_set():
            try:
                return self.send()
            except NodeRefused:
                raise
            except ControlPlaneError as error:
                log.warning("waiting for the control plane: %s", error)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        raise NodeRefused("stopped before the control plane answered")

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name=f"heartbeat-{self.node.config.name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        node = self.node
        while not node.stopped.is_set():
            interval = self.view.heartbeat_interval
            try:
                term = self.view.term
                if self.send().term != term:
                    # A new term: the election waits for our report built after its fence
                    # moved, so send it now (a short pause lets the fence follow the database).
                    interval = min(interval, 0.02)
            except NodeRefused as refused:
                node.refused = str(refused)
                log.error("control plane refuses node %s: %s; stopping", node.config.name, refused)
                node.stopping.set()
                return
            except ControlPlaneError as error:
                log.warning("heartbeat failed: %s", error)
            except Exception:
                log.exception("heartbeat failed")
            node.stopped.wait(interval)

    def report(self) -> dict[str, Any]:
        """This node's heartbeat. The fence is read *before* the log is measured: a report
        that saw the fence at term E says that no ack of an older term was added after
        the position it gives (acks are fenced), which makes it a vote in the election
        of term E (nodes.protocol.election)."""
        node, view = self.node, self.view
        try:
            fence = get_fence(node.redis, view.cluster) if view else None
        except redis_lib.RedisError:
            fence = None
        state = node.state
        engine = state.engine if state else None
        ready = node.phase.ready
        if state is None or not ready:
            # Still opening or replaying its archive: its tail is not known yet, so the
            # report claims nothing (no archive id, no fence): it is no vote (DESIGN §4).
            fence, archived, last_term, archive_id, truncations = None, 0, 0, "", 0
        else:
            archived, last_term = state.tail
            archive_id, truncations = state.archive_id, state.truncations
        settled = node.settled_quorum()
        return {
            "status": node.phase.reported,
            "status_message": node.status[:500],
            "term": view.term if view else 0,
            "archived_position": archived,
            "applied_position": engine.position if engine else 0,
            "state_hash": _hash_text(node.checkpoint[1]) if engine else "",
            "state_hash_position": node.checkpoint[0],
            "software_version": SOFTWARE_VERSION,
            "archive_id": archive_id,
            "last_term": last_term,
            "fence_seen": fence or 0,
            "stalled_for": round(max(0.0, time.monotonic() - node.cycle_done_at), 3),
            "truncations": truncations,
            "settled_quorum": -1 if settled is None else settled,
            "report_boot": str(state.boot) if state is not None and ready else "",
            "report_seq": next(self._seq),
            "echo_epoch": view.report_epoch if view else 0,
            **_archive_size(node, ready),
            **_client_nonces(node),
        }


def _client_nonces(node: Node) -> dict[str, dict[str, int]]:
    """The batch-nonce marks this process acknowledged while leading (wire.nonces), for
    the control plane to hand to the next leader; nothing when it never led."""
    # dict() of a dict of str -> int copies it in one step under the GIL, while the
    # commit thread may be raising a mark.
    marks = dict(node.client_nonces)
    return {"client_nonces": marks} if marks else {}


def _archive_size(node: Node, ready: bool) -> dict[str, int]:
    """What retention last measured, for the heartbeat (nothing until it has)."""
    retention = node.retention
    size = retention.size if retention is not None and ready else None
    if size is None:
        return {}
    return {
        "archive_first_position": size.first,
        "archive_bytes": size.bytes,
        "snapshot_position": retention.snapshot_position,
    }


def _hash_text(value: Any) -> str:
    return value.hex() if isinstance(value, bytes) else format(value, "x")
