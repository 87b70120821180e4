"""A node is a Celery worker: this bootstep runs the node's loop inside it.

Start a node with:

    celery -A nodes.worker worker --node-name NAME -Q node.NAME -P solo -c 1

The loop is a long-lived service with start/stop (a bootstep), never a task: a task
would be re-delivered after the broker's visibility timeout and run twice. The worker
consumes its own queue `node.NAME`, where peers and the control plane send it short
requests as `nodes.request` tasks (wire/rpc.py, answered by nodes/peer.py): take a
snapshot, status, refresh, stop, replay your archive, your terms, a book query. SIGTERM
makes Celery stop its bootsteps: the node finishes the batch in hand and exits.
"""

from __future__ import annotations

import logging

from celery import bootsteps
from click import Option

from nodes.adapters import Adapters
from nodes.celery_app import app
from nodes.config import NodeConfig
from nodes.control import HttpControlPlane
from nodes.runtime import Node
from wire import rpc

log = logging.getLogger(__name__)

def _stop_worker(exit_code: int) -> None:
    """Ask the worker's main loop to shut down with this exit status (what Celery's own
    signal handler does, without the signal's fixed status 0)."""
    from celery.worker import state

    state.should_stop = exit_code


CURRENT: Node | None = None  # the node this worker process runs


@app.task(name=rpc.TASK, bind=True, ignore_result=True)
def request(task, *args, **kwargs) -> None:
    """A request to this node from a peer or the control plane (wire/rpc.py): answered on
    the list it names. Runs on the worker's own thread, beside the node's loop."""
    node = CURRENT
    service = node.peer_service if node is not None else None
    if service is None:  # still starting: the asker times out and asks again
        log.info("request %s: the node is not serving requests yet", task.request.id)
        return
    service.handle(task.request.id, args, kwargs)


class NodeStep(bootsteps.StartStopStep):
    """Runs the node's loop thread for the life of the worker."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker, node_name: str | None = None, **options) -> None:
        super().__init__(worker, **options)
        self.node_name = node_name
        self.node: Node | None = None

    def include_if(self, worker) -> bool:
        return bool(self.node_name)

    def start(self, worker) -> None:
        config = NodeConfig.from_env(self.node_name)
        control = HttpControlPlane(
            config.control_plane_url, config.name, config.secret, secret_file=config.secret_file
        )
        # A node whose loop ends on its own (refused, crashed) must not leave an empty
        # worker behind: stop the whole worker with a non-zero status, so the process
        # supervisor restarts it (a SIGTERM would exit 0, which runners leave alone).
        # Here, and only here, the node is put together: its adapters are PostgreSQL
        # archives and the cluster's Redis (nodes/adapters.py).
        global CURRENT
        self.node = CURRENT = Node(config, control, Adapters(), on_exit=_stop_worker)
        self.node.start()
        log.info("node %s started; requests on queue %s", config.name, rpc.queue(config.name))

    def stop(self, worker) -> None:
        if self.node is not None:
            log.info("node %s stopping: finishing the batch in hand", self.node.config.name)
            self.node.stop()

    def shutdown(self, worker) -> None:
        self.stop(worker)


app.user_options["worker"].add(
    Option(
        ("--node-name",),
        default=None,
        help="Run the trading-engine node NAME in this worker (it must be registered).",
    )
)
app.steps["worker"].add(NodeStep)
