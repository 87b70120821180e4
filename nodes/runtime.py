"""The node runtime: one loop thread that rebuilds the state, then runs the role it is given.

Around it, each in a module of its own: heartbeats and the lease (nodes/heartbeat.py),
recovery, rejoin and snapshot installs (nodes/recovery.py), the snapshot schedule
(nodes/snapshots.py), the answers to requests (nodes/peer.py), retention
(nodes/retention.py). The roles, retention, the peer service and installs get a typed
context (nodes/context.py), not the node; the node is given its adapters
(nodes/adapters.py), it does not make them.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
from concurrent.futures import Future
from typing import Any

import redis as redis_lib

from archive import ArchiveError
from nodes import metrics, peer, recovery
from nodes.adapters import Adapters
from nodes.committer import SteppedDown
from nodes.config import NodeConfig
from nodes.context import Phase, RoleContext
from nodes.control import ClusterView, ControlPlane, NodeRefused
from nodes.follower import Follower
from nodes.gcwatch import GcWatch
from nodes.heartbeat import Heartbeats
from nodes.install import SnapshotNeeded
from nodes.leader import Leader, PoisonCommand
from nodes.retention import Retention
from nodes.snapshots import Snapshots
from nodes.state import NodeState
from wire import rpc
from wire.signing import AckNonces

log = logging.getLogger("nodes.runtime")

EXIT_CRASHED = 70  # EX_SOFTWARE: the loop ended on a bug; the runner restarts the node
EXIT_REFUSED = 78  # EX_CONFIG: the control plane refuses this node; an operator must act
STATUS_LOG_INTERVAL_S = 10.0
FREEZE_EVERY_S = 10.0  # NODE_GC=freeze: how often what survived joins the permanent generation
_NO_DIGITS = str.maketrans("", "", "0123456789")  # a status's kind: its words, not its numbers


class Node:
    """One node: application (engine) + archive, driven by one loop thread.

    Threads: the loop thread owns the state (engine + archive) and the phase; the
    heartbeat thread reports to the control plane and swaps in the answer (`view`, an
    immutable value); a leader adds its archive and commit threads; the worker's own
    thread runs the requests sent to the node (`nodes.request` tasks, nodes/peer.py) and
    hands engine queries and snapshot requests to the loop; the retention thread trims
    the archive.
    """

    def __init__(self, config: NodeConfig, control: ControlPlane, adapters: Adapters, on_exit=None) -> None:
        self.config = config
        self.adapters = adapters  # makes every archive and Redis adapter the node uses (nodes/adapters.py)
        self.on_exit = on_exit  # on_exit(code): the loop ended on its own (refused, crashed)
        self.redis = config.redis.client(health_check_interval=10)
        self.heartbeats = Heartbeats(self, control)
        self.state: NodeState | None = None
        self.context: RoleContext | None = None  # once the state is open
        self.role: Leader | Follower | None = None
        self.phase = Phase.STARTING
        self.status = "starting"
        self.checkpoint: tuple[int, int] = (0, 0)  # (position, running hash at it)
        self.gc_watch = GcWatch().install()
        self.stats = metrics.LoopStats()
        self.ack_nonces = AckNonces()  # this process's ack nonces (wire.signing)
        self.client_nonces: dict[str, int] = {}  # the batch-nonce marks it acknowledged as leader (wire.nonces)
        self._frozen_at = time.monotonic()
        # on_commit(latencies, events): a leader's delivery of committed batches, for the
        # metrics (set by metrics.start when they are served).
        self.on_commit = None
        self.queries: queue.Queue[tuple[str, dict, Future]] = queue.Queue()  # for the loop
        self._status_kind, self._status_logged_at = "", 0.0
        self.stopping = threading.Event()
        self.stopped = threading.Event()  # the loop has ended (heartbeats go on until then)
        self.cycle_done_at = time.monotonic()  # liveness is progress: the loop's, not a thread's
        self.snapshots = Snapshots(config.snapshot_every)
        self.refused: str | None = None
        self.peer_service: peer.PeerService | None = None
        self.retention: Retention | None = None  # deletes what the archive no longer needs
        self._loop_thread: threading.Thread | None = None

    @property
    def view(self) -> ClusterView | None:
        return self.heartbeats.view

    @property
    def ready(self) -> bool:
        return self.phase.ready

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        metrics.start(self)  # NODE_METRICS_PORT: this node's own Prometheus metrics
        self._loop_thread = threading.Thread(target=self.run, name=f"node-{self.config.name}")
        self._loop_thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the batch in hand, archive it, and stop."""
        self.stopping.set()
        if self._loop_thread is not None:
            self._loop_thread.join(timeout)

    def run(self) -> None:
        exit_code = EXIT_CRASHED
        try:
            self._run()
            exit_code = EXIT_REFUSED if self.refused else 0  # the heartbeat thread was refused
        except NodeRefused as refused:
            self.refused = str(refused)
            exit_code = EXIT_REFUSED
            log.error("node %s refused by the control plane: %s", self.config.name, refused)
        except Exception:
            log.exception("node %s crashed", self.config.name)
            raise
        finally:
            try:
                self.stop_role()
            except Exception:
                log.exception("stopping the role failed")
            if self.peer_service is not None:
                self.peer_service.stop()
            if self.retention is not None:
                self.retention.stop()
            if self.state is not None:
                self.snapshots.finish(self.state)
                self.state.close()
            self.stopped.set()
            if (not self.stopping.is_set() or self.refused) and self.on_exit is not None:
                # Ended on its own: the process must exit non-zero so that its runner
                # (make run, systemd) restarts it or an operator looks (refused).
                self.on_exit(exit_code or EXIT_CRASHED)

    def _run(self) -> None:
        self.heartbeats.first()
        self.heartbeats.start()
        recovery.recover_until_done(self)
        self.cycle_done_at = time.monotonic()  # start-up replay is not a stall: it reports "starting"
        self.peer_service = peer.PeerService(self.role_context(), self._requests())  # answered from now on
        self.retention = Retention(self.role_context(), self.view.archive_location)
        self.retention.start()
        while not self.stopping.is_set():
            status = self._guarded_cycle()
            self.cycle_done_at = time.monotonic()
            self._log_status(status)
            self._answer_queries()
            self.snapshots.between_cycles(self.state)

    def _guarded_cycle(self) -> str:
        """One cycle; a failure becomes a status, and the node rebuilds from its archive."""
        try:
            return self.run_cycle()
        except PoisonCommand as poison:
            status = f"set aside a command the engine failed on, rebuilding from the archive: {poison}"
            log.error("%s", status)
            recovery.rebuild(self, 0.0, poison)
        except SnapshotNeeded as needed:
            status = recovery.install_snapshot(self, str(needed))
        except SteppedDown as reason:
            status = f"stepped down: {reason}; rebuilding from the archive"
            log.warning("%s", status)
            recovery.rebuild(self, 0.0)
        except (ArchiveError, redis_lib.RedisError, OSError, rpc.PeerUnavailable) as error:
            status = f"error, retrying: {type(error).__name__}: {error}"
            log.warning("%s", status)
            recovery.rebuild(self, 0.5)
        except Exception as error:
            # A bug, not a broken service: say so loudly, rebuild from the archive
            # (the only state that counts) and go on rather than die silently.
            status = f"unexpected error, rebuilding from the archive: {type(error).__name__}: {error}"
            log.exception("%s", status)
            recovery.rebuild(self, 1.0)
        return status

    def _log_status(self, status: str) -> None:
        """Log the status when it changes in kind, not each time a position moves (a busy
        leader changes position a few hundred times a second)."""
        kind = status.translate(_NO_DIGITS)  # C speed: this runs every cycle
        now = time.monotonic()
        if kind != self._status_kind or now - self._status_logged_at > STATUS_LOG_INTERVAL_S:
            log.info("%s (GC: %s)", status, self.gc_watch.summary())
            self._status_kind, self._status_logged_at = kind, now
        self.status = status

    def set_status(self, status: str) -> None:
        """What the node says it is doing (heartbeats, dashboard), while not in a cycle."""
        self.status = status[:500]

    # -- the role loop -----------------------------------------------------------------

    def run_cycle(self) -> str:
        """Take the role the control plane gives, run one cycle of it, say what happened."""
        view = self.view
        if view.role == "leader":
            waiting = self._lead(view)
            if waiting:
                return waiting
        else:
            self.phase = Phase.LIVE
            if view.leader is None:
                self.stop_role()
                time.sleep(0.1)
                return "follower: waiting for the control plane to name a leader"
            role = self.role
            if not isinstance(role, Follower) or (role.term, role.leader) != (view.term, view.leader):
                self.stop_role()
                waiting = recovery.rejoin(self, view)
                if waiting:
                    return waiting
                self.role = Follower(self.role_context(), view.term, view.leader)
        return self.role.cycle()

    def _lead(self, view: ClusterView) -> str | None:
        """Lead `view`'s term if the lease and the archive allow it; else why not."""
        if not self.heartbeats.leading_allowed(view):
            self.stop_role()
            time.sleep(0.05)
            return (
                f"leader of term {view.term}: lease expired (no heartbeat answered within "
                f"{view.lease:.1f} s of being sent), not taking commands"
            )
        if view.resyncing or view.archive_id != self.state.archive_id:
            # The control plane has not seen this archive yet (just restarted), or
            # knows it as a new empty replica: leading would start the term's log
            # over (DESIGN §4 "Archive identity"). Wait for its answer.
            self.stop_role()
            time.sleep(0.05)
            return (
                f"leader of term {view.term}: not leading until the control plane confirms "
                f"archive {self.state.archive_id[:8]}"
            )
        if view.switchover_to:
            # Planned switchover: take no more commands; the commit thread goes on
            # delivering, and our position stays put for the target to reach.
            self.phase = Phase.DRAINING
            time.sleep(0.02)
            return (
                f"leader of term {view.term}: paused for the switchover to "
                f"{view.switchover_to} at position {self.state.position}"
            )
        self.phase = Phase.LIVE
        if not isinstance(self.role, Leader) or self.role.term != view.term:
            self.stop_role()
            self.role = Leader(self.role_context(), view.term)
            self.role.start()
            log.info("leading term %d from position %d", view.term, self.state.position)
        return None

    def role_context(self) -> RoleContext:
        if self.context is None or self.context.state is not self.state:
            self.context = RoleContext(
                config=self.config, state=self.state, redis=self.redis, stats=self.stats,
                current_view=lambda: self.heartbeats.view, after_batch=self.after_batch,
                stop=self.stopping, ack_nonces=self.ack_nonces, adapters=self.adapters,
                phase=lambda: self.phase, set_status=self.set_status, archive_renewed=self._archive_renewed,
                on_commit=self.on_commit, client_nonces=self.client_nonces,
            )  # fmt: skip
        return self.context

    def _requests(self) -> peer.NodeRequests:
        """What the control plane's requests may ask of this node (nodes/peer.py)."""
        return peer.NodeRequests(
            query=self.query, take_snapshot=self.snapshots.request, status=lambda: self.status,
            report=self.report, heartbeat_now=self.heartbeat_now,
        )  # fmt: skip

    def _archive_renewed(self) -> None:
        if self.retention is not None:
            self.retention.forget()

    def stop_role(self) -> None:
        role, self.role = self.role, None
        if isinstance(role, Follower):
            role.stop()
        if isinstance(role, Leader):
            role.stop()
            if self.state.position != self.state.archived:
                # Batches applied in memory never reached the archive (the archive thread
                # was refused or failed): the archive is the state that counts.
                recovery.recover(self)

    def settled_quorum(self) -> int | None:
        """While leading the view's term: the W the heartbeat reports as settled."""
        role, view = self.role, self.view
        if isinstance(role, Leader) and view is not None and role.term == view.term:
            return role.settled_quorum(view.write_quorum)
        return None

    def after_batch(self) -> None:
        state = self.state
        # One tuple, swapped in whole: the heartbeat thread reads a position and the hash
        # at that same position, never a hash from one batch later.
        self.checkpoint = (state.engine.position, state.engine.running_hash)
        self.snapshots.after_batch(state)
        if self.config.gc_policy == "freeze":
            # What the book grew since start-up joins the permanent generation too, now and
            # then (gc.freeze() is a list splice, constant time): left in generation 2, a
            # full collection over hours of orders paused a soak's node for 7 s.
            now = time.monotonic()
            if now - self._frozen_at >= FREEZE_EVERY_S:
                gc.freeze()
                self._frozen_at = now

    # -- requests from other threads -----------------------------------------------------

    def query(self, op: str, args: dict, timeout: float) -> object:
        """Run a read-only engine query on the loop thread (from another thread)."""
        answer: Future = Future()
        self.queries.put((op, args, answer))
        try:
            return answer.result(timeout)
        except TimeoutError:
            raise TimeoutError(f"the node's loop did not answer {op!r} within {timeout:.0f} s") from None

    def _answer_queries(self) -> None:
        while True:
            try:
                op, args, answer = self.queries.get_nowait()
            except queue.Empty:
                return
            engine = self.state.engine
            try:
                if op == "depth":
                    answer.set_result(engine.depth(str(args["symbol"]), int(args.get("levels", 10))))
                else:
                    answer.set_result(engine.order_status(int(args["order_id"])))
            except (KeyError, TypeError, ValueError) as error:
                answer.set_exception(ValueError(f"bad query {op}: {error}"))

    def heartbeat_now(self) -> None:
        self.heartbeats.send()

    def report(self) -> dict[str, Any]:
        return self.heartbeats.report()
