"""Short control messages to a node, sent as Celery tasks on the node's own queue."""

from __future__ import annotations

from archive import PostgresEventLog, publish_replay
from controlplane.celery import app

REPLAY_TIMEOUT_S = 120


def _node():
    from nodes import worker

    if worker.CURRENT is None:
        raise RuntimeError("this worker runs no node (start it with --node-name)")
    return worker.CURRENT


@app.task(name="nodes.take_snapshot")
def take_snapshot(timeout: float = 60.0) -> str:
    """Ask the node's loop to snapshot its state between two batches; wait for it."""
    node = _node()
    node.snapshot_done.clear()
    node.snapshot_requested.set()
    if not node.snapshot_done.wait(timeout):
        return "snapshot still pending after the timeout"
    return node.last_snapshot_status


@app.task(name="nodes.status")
def status() -> dict:
    node = _node()
    return {"node": node.config.name, "status": node.status, **node.report()}


@app.task(name="nodes.stop")
def stop() -> str:
    node = _node()
    node.stopping.set()
    return f"node {node.config.name} is stopping"


@app.task(name="nodes.publish_replay")
def replay(follower: str, start: int) -> int:
    """Publish this node's archive from `start` to its tail on `follower`'s replay stream.

    Runs on a connection of its own: the node's loop keeps appending meanwhile. Returns
    the last position published.
    """
    node = _node()
    log = PostgresEventLog(node.view.archive_location)
    try:
        end, _ = log.refresh_tail()
        publish_replay(log, node.redis, node.view.cluster, follower, start, end)
        return end
    finally:
        log.close()


def request_replay(leader: str, follower: str, start: int) -> int:
    """From a follower: have the leader replay its archive from `start`; returns the end."""
    result = app.send_task("nodes.publish_replay", args=[follower, start], queue=f"node.{leader}")
    try:
        return int(result.get(timeout=REPLAY_TIMEOUT_S, disable_sync_subtasks=False))
    finally:
        result.forget()


__all__ = ["replay", "request_replay", "status", "stop", "take_snapshot"]
