"""How a node gets its state back: rebuild from its archive, rejoin a new leader, install a snapshot.

The archive is the only state that counts: after any failed cycle the node drops its
role and rebuilds from it, retrying through a database or Redis outage with backoff
(DESIGN §4 "No wedges"); before following a new term it drops what the leader's log
does not hold (rejoin); when its log cannot be caught up it installs a peer's snapshot.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import redis as redis_lib

from archive import ArchiveError
from nodes import install
from nodes.celery_app import app as celery_app
from nodes.context import Phase
from nodes.control import ClusterView, NodeRefused
from nodes.engine import CodecError
from nodes.install import SnapshotNeeded
from nodes.leader import Leader, PoisonCommand
from nodes.protocol import rejoin as rejoin_rule
from nodes.rejoin import term_ranges
from nodes.state import ArchiveNeedsSnapshot, NodeState
from wire import rpc

if TYPE_CHECKING:
    from nodes.runtime import Node

log = logging.getLogger("nodes.runtime")


def rebuild(node: Node, pause: float, poison: PoisonCommand | None = None) -> None:
    """After a failed cycle: stop the role, set a poison command aside, and rebuild from
    the archive; a failure here is retried, never escapes the loop."""
    leader = node.role
    try:
        node.stop_role()
    except Exception as error:
        log.warning("stopping the role failed: %s: %s", type(error).__name__, error)
        node.role = None
    if poison is not None and isinstance(leader, Leader):
        retry(node, "setting the poison command aside", lambda: poison.set_aside(node.redis, node.view.cluster, leader.dead_letters))
    if pause:
        node.stopping.wait(pause)
    recover_until_done(node)


def recover_until_done(node: Node) -> None:
    retry(node, "rebuilding from the archive", lambda: recover(node))


def retry(node: Node, what: str, action: Callable[[], object]) -> None:
    delay = 0.2
    while not node.stopping.is_set():
        try:
            action()
            return
        except NodeRefused:
            raise
        except Exception as error:
            node.phase = Phase.STARTING
            node.status = f"{what} failed, retrying in {delay:.1f} s: {type(error).__name__}: {error}"[:500]
            log.warning("%s", node.status)
            node.stopping.wait(delay)
            delay = min(delay * 2, 5.0)


def recover(node: Node) -> None:
    """Rebuild the state from the archive: latest snapshot, then the log after it."""
    if node.state is None:
        node.state = NodeState(node.view.archive_location, node.adapters)
        node.snapshots.open(node.view.archive_location, node.adapters)
    state = node.state
    node.phase = Phase.STARTING
    gc.unfreeze()
    try:
        node.status = state.recover(progress=lambda p, t: _replay_progress(node, p, t))
    except ArchiveNeedsSnapshot as error:
        # Nothing here can rebuild the state: start empty under a new archive id (a
        # new empty replica); following then installs a peer's snapshot.
        log.error("%s: renewing the archive to install a peer's snapshot", error)
        state.renew_archive()
        node.status = state.recover(progress=lambda p, t: _replay_progress(node, p, t))
    node.checkpoint = (state.engine.position, state.engine.running_hash)
    node.snapshots.recovered(state)
    log.info("%s", node.status)
    node.gc_watch.apply_policy(node.config.gc_policy)
    node.phase = Phase.LIVE


def install_snapshot(node: Node, reason: str) -> str:
    """Replace the archive with the leader's latest snapshot and the log after it
    (nodes/install.py), then rebuild from it. Not ready meanwhile: the reports claim
    nothing, so the node is neither a vote nor a candidate, and it sends no ack."""
    source = node.view.leader
    node.stop_role()
    if source is None or source == node.config.name:
        time.sleep(0.2)
        return f"cannot catch up ({reason}); waiting for a leader to install a snapshot from"
    log.warning("%s: installing a snapshot from %s", reason, source)
    node.snapshots.finish(node.state)  # a snapshot of the old state goes to the old archive, or nowhere
    node.phase = Phase.INSTALLING
    try:
        status = install.install(node.role_context(), source)
        log.warning("%s", status)
    except (install.InstallFailed, rpc.PeerUnavailable, ArchiveError, CodecError, redis_lib.RedisError) as error:
        status = f"installing a snapshot from {source} failed, retrying: {type(error).__name__}: {error}"
        log.warning("%s", status)
        node.stopping.wait(1.0)
    finally:
        node.phase = Phase.STARTING
    recover_until_done(node)
    return status


def rejoin(node: Node, view: ClusterView) -> str | None:
    """Before following a new term: drop what the leader's log does not hold.

    Entries of our tail written in an older term may be a deposed leader's batches
    that were never committed. Find the last position where our log and the
    leader's agree, truncate after it, and rebuild the state from the archive.
    Returns a status sentence while the leader cannot be asked, else None.
    """
    state = node.state
    tail, tail_term = state.log.tail()
    if not rejoin_rule.needs_rejoin(tail, tail_term, view.term):
        return None  # nothing written before this term: nothing to disagree on
    try:
        theirs = rpc.ask(celery_app, node.redis, view.cluster, view.leader, "terms", timeout=3)
    except rpc.PeerUnavailable as error:
        time.sleep(0.2)
        return f"follower: waiting to compare logs with leader {view.leader} ({error})"
    agreed = rejoin_rule.truncate_after(term_ranges(state.log), [tuple(r) for r in theirs])
    if agreed is not None and rejoin_rule.install_instead(agreed, state.log.size().first):
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
        recover(node)
    return None


def _replay_progress(node: Node, position: int, tail: int) -> None:
    # Goes out with the heartbeats (status message): the dashboard and `cluster list`
    # show how far a starting node is.
    node.status = f"replaying its archive: {_count(position)} / {_count(tail)} events"


def _count(value: int) -> str:
    return f"{value / 1e6:.1f} M" if value >= 1_000_000 else f"{value:,}"
