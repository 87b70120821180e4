"""The node runtime: start-up replay, heartbeats, lease, and the role loop (leader or follower)."""

from __future__ import annotations

import gc
import itertools
import logging
import queue
import sys
import threading
import time
from typing import Any

import redis as redis_lib

from archive import ArchiveError, get_fence
from nodes import install, metrics, peer
from nodes.config import NodeConfig
from nodes.control import ClusterView, ControlPlane, ControlPlaneError, NodeRefused
from nodes.engine import CodecError
from nodes.follower import Follower
from nodes.gcwatch import GcWatch
from nodes.install import SnapshotNeeded
from nodes.leader import Leader, PoisonCommand, SteppedDown
from nodes.protocol import rejoin
from nodes.protocol.lease import Lease
from nodes.rejoin import term_ranges
from nodes.retention import Retention
from nodes.snapshotter import Snapshotter
from nodes.state import ArchiveNeedsSnapshot, NodeState
from wire import rpc
from wire.signing import AckNonces

log = logging.getLogger("nodes.runtime")

SOFTWARE_VERSION = "0.1.0"
EXIT_CRASHED = 70  # EX_SOFTWARE: the loop ended on a bug; the runner restarts the node
EXIT_REFUSED = 78  # EX_CONFIG: the control plane refuses this node; an operator must act
STATUS_LOG_INTERVAL_S = 10.0
FREEZE_EVERY_S = 10.0  # NODE_GC=freeze: how often the objects that survived join the permanent generation
_NO_DIGITS = str.maketrans("", "", "0123456789")  # a status's kind: its words, not its numbers


class Node:
    """One node: application (engine) + archive, driven by one loop thread.

    Threads: the loop thread owns the state (engine + archive); the heartbeat thread
    reports to the control plane and swaps in the answer (`view`, an immutable value);
    a leader adds its commit thread. Control tasks only set flags the loop reads.
    """

    def __init__(self, config: NodeConfig, control: ControlPlane, on_exit=None) -> None:
        self.config = config
        self.on_exit = on_exit  # on_exit(code): the loop ended on its own (refused, crashed)
        self.control = control
        self.redis = config.redis.client(health_check_interval=10)
        self.view: ClusterView | None = None
        self.state: NodeState | None = None
        self.role: Leader | Follower | None = None
        self.status = "starting"
        self.ready = False
        self.paused_for_switchover = False
        self.checkpoint: tuple[int, int] = (0, 0)  # (position, running hash at it)
        self.gc_watch = GcWatch().install()
        self.stats = metrics.LoopStats()
        self.ack_nonces = AckNonces()  # this process's ack nonces (wire.signing)
        self._frozen_at = time.monotonic()
        # on_commit(latencies, events): a leader's delivery of committed batches, for the
        # metrics (set by metrics.start when they are served).
        self.on_commit = None
        self.queries: queue.Queue = queue.Queue()  # (op, args, answer holder), for the loop
        self._status_kind, self._status_logged_at = "", 0.0
        self.stopping = threading.Event()
        self.stopped = threading.Event()
        self.cycle_done_at = time.monotonic()  # liveness is progress: the loop's, not a thread's
        # Reports are numbered (boot of the archive, sequence): the control plane drops one
        # that arrives after a later one (a slow request, a previous process's), never
        # taking it for news.
        self._report_seq = itertools.count(1)
        self.lease = Lease(duration=0.0)  # renewed by every answered heartbeat, from its send time
        self.snapshot_requested = threading.Event()
        self.snapshot_done = threading.Event()
        self.last_snapshot_status = ""
        self.snapshotter: Snapshotter | None = None  # forks the snapshot children
        self._next_snapshot_at = 0  # position from which an automatic snapshot is due
        self.refused: str | None = None
        self.peer_service: peer.PeerService | None = None
        self.retention: Retention | None = None  # deletes what the archive no longer needs
        self.installing = False  # replacing the archive with a peer's snapshot: retention waits
        self._loop_thread: threading.Thread | None = None
        self._heartbeat_thread: threading.Thread | None = None

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
                self._stop_role()
            except Exception:
                log.exception("stopping the role failed")
            if self.peer_service is not None:
                self.peer_service.stop()
            if self.retention is not None:
                self.retention.stop()
            if self.state is not None:
                self._finish_snapshot()
                self.state.close()
            self.stopped.set()
            if (not self.stopping.is_set() or self.refused) and self.on_exit is not None:
                # Ended on its own: the process must exit non-zero so that its runner
                # (make run, systemd) restarts it or an operator looks (refused).
                self.on_exit(exit_code or EXIT_CRASHED)

    def _run(self) -> None:
        self.view = self._first_heartbeat()
        self._heartbeat_thread = threading.Thread(
            target=self._heartbeat_loop, name=f"heartbeat-{self.config.name}", daemon=True
        )
        self._heartbeat_thread.start()
        self._recover_until_done()
        self.cycle_done_at = time.monotonic()  # start-up replay is not a stall: it reports "starting"
        self.peer_service = peer.PeerService(self)
        self.peer_service.start()
        self.retention = Retention(self, self.view.archive_location)
        self.retention.start()
        while not self.stopping.is_set():
            try:
                status = self.run_cycle()
            except PoisonCommand as poison:
                status = f"set aside a command the engine failed on, rebuilding from the archive: {poison}"
                log.error("%s", status)
                self._rebuild(0.0, poison)
            except SnapshotNeeded as needed:
                status = self._install(str(needed))
            except SteppedDown as reason:
                status = f"stepped down: {reason}; rebuilding from the archive"
                log.warning("%s", status)
                self._rebuild(0.0)
            except (ArchiveError, redis_lib.RedisError, OSError, rpc.PeerUnavailable) as error:
                status = f"error, retrying: {type(error).__name__}: {error}"
                log.warning("%s", status)
                self._rebuild(0.5)
            except Exception as error:
                # A bug, not a broken service: say so loudly, rebuild from the archive
                # (the only state that counts) and go on rather than die silently.
                status = f"unexpected error, rebuilding from the archive: {type(error).__name__}: {error}"
                log.exception("%s", status)
                self._rebuild(1.0)
            self.cycle_done_at = time.monotonic()
            self._log_status(status)
            self._answer_queries()
            if self.snapshot_requested.is_set():
                self._take_snapshot()
            self._poll_snapshot()

    def _rebuild(self, pause: float, poison: PoisonCommand | None = None) -> None:
        """After a failed cycle: stop the role, set a poison command aside, and rebuild
        from the archive, riding out a database or Redis outage with backoff (DESIGN §4
        "No wedges"): a failure here is retried, never escapes the loop."""
        leader = self.role
        try:
            self._stop_role()
        except Exception as error:
            log.warning("stopping the role failed: %s: %s", type(error).__name__, error)
            self.role = None
        if poison is not None and isinstance(leader, Leader):
            self._retry("setting the poison command aside", lambda: poison.set_aside(self.redis, self.view.cluster, leader.dead_letters))
        if pause:
            self.stopping.wait(pause)
        self._recover_until_done()

    def _recover_until_done(self) -> None:
        self._retry("rebuilding from the archive", self._recover)

    def _retry(self, what: str, action) -> None:
        delay = 0.2
        while not self.stopping.is_set():
            try:
                action()
                return
            except NodeRefused:
                raise
            except Exception as error:
                self.ready = False
                self.status = f"{what} failed, retrying in {delay:.1f} s: {type(error).__name__}: {error}"[:500]
                log.warning("%s", self.status)
                self.stopping.wait(delay)
                delay = min(delay * 2, 5.0)

    def _log_status(self, status: str) -> None:
        """Log the status when it changes in kind, not each time a position moves (a busy
        leader changes position a few hundred times a second)."""
        kind = status.translate(_NO_DIGITS)  # C speed: this runs every cycle
        now = time.monotonic()
        if kind != self._status_kind or now - self._status_logged_at > STATUS_LOG_INTERVAL_S:
            log.info("%s (GC: %s)", status, self.gc_watch.summary())
            self._status_kind, self._status_logged_at = kind, now
        self.status = status

    def _recover(self) -> None:
        if self.state is None:
            self.state = NodeState(self.view.archive_location)
            self.snapshotter = Snapshotter(self.view.archive_location)
        self.ready = False
        gc.unfreeze()
        try:
            self.status = self.state.recover(progress=self._replay_progress)
        except ArchiveNeedsSnapshot as error:
            # Nothing here can rebuild the state: start empty under a new archive id (a
            # new empty replica); following then installs a peer's snapshot.
            log.error("%s: renewing the archive to install a peer's snapshot", error)
            self.state.renew_archive()
            self.status = self.state.recover(progress=self._replay_progress)
        self.checkpoint = (self.state.engine.position, self.state.engine.running_hash)
        self._next_snapshot_at = self.state.last_snapshot_position + self.config.snapshot_every
        log.info("%s", self.status)
        self._apply_gc_policy()
        self.ready = True

    def _install(self, reason: str) -> str:
        """Replace the archive with the leader's latest snapshot and the log after it
        (nodes/install.py), then rebuild from it. Not ready meanwhile: the reports claim
        nothing, so the node is neither a vote nor a candidate, and it sends no ack."""
        source = self.view.leader
        self._stop_role()
        if source is None or source == self.config.name:
            time.sleep(0.2)
            return f"cannot catch up ({reason}); waiting for a leader to install a snapshot from"
        log.warning("%s: installing a snapshot from %s", reason, source)
        self._finish_snapshot()  # a snapshot of the old state goes to the old archive, or nowhere
        self.ready = False
        self.installing = True
        try:
            status = install.install(self, source)
            log.warning("%s", status)
        except (install.InstallFailed, rpc.PeerUnavailable, ArchiveError, CodecError, redis_lib.RedisError) as error:
            status = f"installing a snapshot from {source} failed, retrying: {type(error).__name__}: {error}"
            log.warning("%s", status)
            self.stopping.wait(1.0)
        finally:
            self.installing = False
        self._recover_until_done()
        return status

    def set_status(self, status: str) -> None:
        """What the node says it is doing (heartbeats, dashboard), while not in a cycle."""
        self.status = status[:500]

    def _replay_progress(self, position: int, tail: int) -> None:
        # Goes out with the heartbeats (status message): the dashboard and `cluster list`
        # show how far a starting node is.
        self.status = f"replaying its archive: {_count(position)} / {_count(tail)} events"

    def _apply_gc_policy(self) -> None:
        # The loop, archive and commit threads hand work to each other; a thread woken by
        # I/O (a commit done, an ack in) waits for the running one to give up the GIL,
        # 5 ms by default. 0.5 ms keeps those hand-offs off the latency path.
        sys.setswitchinterval(0.0005)
        # Full collections over a large book pause the loop for 100+ ms (DESIGN §6):
        # freeze everything built by the replay into the permanent generation, and
        # make young collections rarer. "off" disables the collector entirely.
        policy = self.config.gc_policy
        if policy == "default":
            return
        self.gc_watch.ignoring = True  # this collection is on purpose, between two roles
        try:
            gc.collect()
        finally:
            self.gc_watch.ignoring = False
        gc.freeze()
        if policy == "freeze":
            gc.set_threshold(50_000, 50, 1000)
        else:
            gc.disable()

    # -- the role loop -----------------------------------------------------------------

    def run_cycle(self) -> str:
        """Take the role the control plane gives, run one cycle of it, say what happened."""
        view = self.view
        if view.role == "leader":
            self.lease.duration = view.lease
            if not self.lease.valid(time.monotonic()):
                self._stop_role()
                time.sleep(0.05)
                return (
                    f"leader of term {view.term}: lease expired (no heartbeat answered within "
                    f"{view.lease:.1f} s of being sent), not taking commands"
                )
            if view.resyncing or view.archive_id != self.state.archive_id:
                # The control plane has not seen this archive yet (just restarted), or
                # knows it as a new empty replica: leading would start the term's log
                # over (DESIGN §4 "Archive identity"). Wait for its answer.
                self._stop_role()
                time.sleep(0.05)
                return (
                    f"leader of term {view.term}: not leading until the control plane confirms "
                    f"archive {self.state.archive_id[:8]}"
                )
            if view.switchover_to:
                # Planned switchover: take no more commands; the commit thread goes on
                # delivering, and our position stays put for the target to reach.
                self.paused_for_switchover = True
                time.sleep(0.02)
                return (
                    f"leader of term {view.term}: paused for the switchover to "
                    f"{view.switchover_to} at position {self.state.position}"
                )
            self.paused_for_switchover = False
            if not isinstance(self.role, Leader) or self.role.term != view.term:
                self._stop_role()
                self.role = Leader(self, view.term)
                self.role.start()
                log.info("leading term %d from position %d", view.term, self.state.position)
        else:
            self.paused_for_switchover = False
            if view.leader is None:
                self._stop_role()
                time.sleep(0.1)
                return "follower: waiting for the control plane to name a leader"
            role = self.role
            if not isinstance(role, Follower) or (role.term, role.leader) != (view.term, view.leader):
                self._stop_role()
                waiting = self._rejoin(view)
                if waiting:
                    return waiting
                self.role = Follower(self, view.term, view.leader)
        return self.role.cycle()

    def _rejoin(self, view: ClusterView) -> str | None:
        """Before following a new term: drop what the leader's log does not hold.

        Entries of our tail written in an older term may be a deposed leader's batches
        that were never committed. Find the last position where our log and the
        leader's agree, truncate after it, and rebuild the state from the archive.
        Returns a status sentence while the leader cannot be asked, else None.
        """
        state = self.state
        tail, tail_term = state.log.tail()
        if not rejoin.needs_rejoin(tail, tail_term, view.term):
            return None  # nothing written before this term: nothing to disagree on
        try:
            theirs = rpc.ask(self.redis, view.cluster, view.leader, "terms", timeout=3)
        except rpc.PeerUnavailable as error:
            time.sleep(0.2)
            return f"follower: waiting to compare logs with leader {view.leader} ({error})"
        agreed = rejoin.truncate_after(term_ranges(state.log), [tuple(r) for r in theirs])
        if agreed is not None and rejoin.install_instead(agreed, state.log.size().first):
            raise SnapshotNeeded(
                f"our log agrees with leader {view.leader}'s only up to position {agreed}, below the "
                f"first position our archive still holds"
            )
        if agreed is not None:
            log.error(
                "REJOIN: dropping positions %d..%d (%d events, never committed): leader %s's "
                "log agrees with ours only up to position %d",
                agreed + 1, tail, tail - agreed, view.leader, agreed,
            )  # fmt: skip
            state.truncate_after(agreed)
            self._recover()
        return None

    def query(self, op: str, args: dict, timeout: float) -> object:
        """Run a read-only engine query on the loop thread (from another thread)."""
        holder: dict = {"done": threading.Event()}
        self.queries.put((op, args, holder))
        if not holder["done"].wait(timeout):
            raise TimeoutError(f"the node's loop did not answer {op!r} within {timeout:.0f} s")
        if "error" in holder:
            raise ValueError(holder["error"])
        return holder["result"]

    def _answer_queries(self) -> None:
        while True:
            try:
                op, args, holder = self.queries.get_nowait()
            except queue.Empty:
                return
            engine = self.state.engine
            try:
                if op == "depth":
                    holder["result"] = engine.depth(str(args["symbol"]), int(args.get("levels", 10)))
                else:
                    holder["result"] = engine.order_status(int(args["order_id"]))
            except (KeyError, TypeError, ValueError) as error:
                holder["error"] = f"bad query {op}: {error}"
            holder["done"].set()

    def heartbeat_now(self) -> None:
        sent_at = time.monotonic()
        self.view = self.control.heartbeat(self.report())
        self.lease.renewed(sent_at)

    def _stop_role(self) -> None:
        role, self.role = self.role, None
        if isinstance(role, Follower):
            role.stop()
        if isinstance(role, Leader):
            role.stop()
            if self.state.position != self.state.archived:
                # Batches applied in memory never reached the archive (the archive thread
                # was refused or failed): the archive is the state that counts.
                self._recover()

    def after_batch(self) -> None:
        state = self.state
        # One tuple, swapped in whole: the heartbeat thread reads a position and the hash
        # at that same position, never a hash from one batch later.
        self.checkpoint = (state.engine.position, state.engine.running_hash)
        if self.config.snapshot_every and state.position >= self._next_snapshot_at and not self.snapshotter.busy:
            self._take_snapshot()
        if self.config.gc_policy == "freeze":
            # What the book grew since start-up joins the permanent generation too, now and
            # then (gc.freeze() is a list splice, constant time): left in generation 2, a
            # full collection over hours of orders paused a soak's node for 7 s.
            now = time.monotonic()
            if now - self._frozen_at >= FREEZE_EVERY_S:
                gc.freeze()
                self._frozen_at = now

    def _take_snapshot(self) -> None:
        """Fork a child that writes the snapshot (nodes/snapshotter.py): the loop pays for
        the fork only, and goes on at once; _poll_snapshot follows the child."""
        self.snapshot_requested.clear()
        if self.snapshotter.busy:
            return  # the request is answered when the snapshot in flight is done
        self._next_snapshot_at = self.state.position + self.config.snapshot_every
        log.info("%s", self.snapshotter.start(self.state.engine))

    def _poll_snapshot(self) -> None:
        snapshotter, state = self.snapshotter, self.state
        if snapshotter is None or state is None or not snapshotter.busy:
            return
        done = snapshotter.poll(state.engine, state.archived)
        if done is not None:
            self._snapshot_finished(done)

    def _finish_snapshot(self) -> None:
        """At stop: a child whose position is archived completes; any other is abandoned."""
        if self.snapshotter is not None and self.snapshotter.busy:
            state = self.state
            done = self.snapshotter.finish(state.engine, lambda: state.archived, timeout=60.0)
            if done is not None:
                self._snapshot_finished(done)

    def _snapshot_finished(self, done) -> None:
        if done.ok:
            self.state.last_snapshot_position = max(self.state.last_snapshot_position, done.position)
            log.info("%s", done.status)
        else:
            log.warning("%s", done.status)
        self.last_snapshot_status = done.status
        self.snapshot_done.set()

    # -- heartbeats --------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        """This node's heartbeat. The fence is read *before* the log is measured: a report
        that saw the fence at term E says that no ack of an older term was added after
        the position it gives (acks are fenced), which makes it a vote in the election
        of term E (nodes.protocol.election)."""
        try:
            fence = get_fence(self.redis, self.view.cluster) if self.view else None
        except redis_lib.RedisError:
            fence = None
        state = self.state
        engine = state.engine if state else None
        if state is None or not self.ready:
            # Still opening or replaying its archive: its tail is not known yet, so the
            # report claims nothing (no archive id, no fence): it is no vote (DESIGN §4).
            fence, archived, last_term, archive_id, truncations = None, 0, 0, "", 0
        else:
            archived, last_term = state.tail
            archive_id, truncations = state.archive_id, state.truncations
        role = self.role
        settled = None
        if isinstance(role, Leader) and self.view is not None and role.term == self.view.term:
            settled = role.settled_quorum(self.view.write_quorum)
        return {
            "status": (
                "starting" if not self.ready
                else "draining" if self.paused_for_switchover
                else "live"
            ),
            "status_message": self.status[:500],
            "term": self.view.term if self.view else 0,
            "archived_position": archived,
            "applied_position": engine.position if engine else 0,
            "state_hash": _hash_text(self.checkpoint[1]) if engine else "",
            "state_hash_position": self.checkpoint[0],
            "software_version": SOFTWARE_VERSION,
            "archive_id": archive_id,
            "last_term": last_term,
            "fence_seen": fence or 0,
            "stalled_for": round(max(0.0, time.monotonic() - self.cycle_done_at), 3),
            "truncations": truncations,
            "settled_quorum": -1 if settled is None else settled,
            "report_boot": str(state.boot) if state is not None and self.ready else "",
            "report_seq": next(self._report_seq),
            "echo_epoch": self.view.report_epoch if self.view else 0,
            **self._archive_size(),
        }

    def _first_heartbeat(self) -> ClusterView:
        delay = 0.2
        while not self.stopping.is_set():
            try:
                sent_at = time.monotonic()
                view = self.control.heartbeat(self.report())
                self.lease.renewed(sent_at)
                return view
            except NodeRefused:
                raise
            except ControlPlaneError as error:
                log.warning("waiting for the control plane: %s", error)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        raise NodeRefused("stopped before the control plane answered")

    def _heartbeat_loop(self) -> None:
        while not self.stopped.is_set():
            interval = self.view.heartbeat_interval
            try:
                sent_at = time.monotonic()
                term = self.view.term
                self.view = self.control.heartbeat(self.report())
                self.lease.renewed(sent_at)
                if self.view.term != term:
                    # A new term: the election waits for our report built after its fence
                    # moved, so send it now (a short pause lets the fence follow the database).
                    interval = min(interval, 0.02)
            except NodeRefused as refused:
                self.refused = str(refused)
                log.error("control plane refuses node %s: %s; stopping", self.config.name, refused)
                self.stopping.set()
                return
            except ControlPlaneError as error:
                log.warning("heartbeat failed: %s", error)
            except Exception:
                log.exception("heartbeat failed")
            self.stopped.wait(interval)


    def _archive_size(self) -> dict[str, int]:
        """What retention last measured, for the heartbeat (nothing until it has)."""
        retention = self.retention
        size = retention.size if retention is not None and self.ready else None
        if size is None:
            return {}
        return {
            "archive_first_position": size.first,
            "archive_bytes": size.bytes,
            "snapshot_position": retention.snapshot_position,
        }


def _count(value: int) -> str:
    return f"{value / 1e6:.1f} M" if value >= 1_000_000 else f"{value:,}"


def _hash_text(value: Any) -> str:
    return value.hex() if isinstance(value, bytes) else format(value, "x")
