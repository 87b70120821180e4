"""Short control messages to a node, sent as Celery tasks on the node's own queue."""

from __future__ import annotations

from nodes.celery_app import app


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


@app.task(name="nodes.refresh")
def refresh() -> str:
    """Re-read the role from the control plane now, not at the next heartbeat."""
    node = _node()
    node.heartbeat_now()
    return f"node {node.config.name}: {node.view.role} in term {node.view.term}"


@app.task(name="nodes.stop")
def stop() -> str:
    node = _node()
    node.stopping.set()
    return f"node {node.config.name} is stopping"
