"""Install from a snapshot (Raft's InstallSnapshot): a node whose log cannot be caught up
(a new node, one whose archive was lost, a follower behind its peers' retention) takes a
peer's latest snapshot and the log after it.

The peer publishes, from its peer-service thread: the snapshot's bytes in chunks on a
one-off Redis list, and the entries from the snapshot's position on (that entry too: it
is where the new log starts) on the asker's replay stream. The asker:

1. reads the snapshot, checks that its bytes hash to the digest the peer stored with it
   and restores it (restore() compares the restored state with the digest once more);
2. renews its archive: empty, under a new archive id. From that moment the control plane
   sees a new empty replica (DESIGN §4 "Archive identity"): not a candidate, not a vote,
   until it has reached what may have been committed meanwhile (the resync target);
3. stores the verified snapshot, starts its log at the snapshot's position and appends
   the rest as it arrives; then the node rebuilds its state from its archive, as at
   start-up (restore + replay, digest checked again).

Throughout, the node reports itself starting and claims nothing: it sends no ack until
it follows again, holding a verified snapshot and the whole log after it. A crash half
way leaves either an empty archive or a snapshot with a prefix of the log after it:
both a consistent state to start from (an empty one installs again).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis as redis_lib

from archive import (
    EventLog,
    EventReader,
    RangeUnavailableError,
    SnapshotStore,
    delete_replay,
    publish_replay,
)
from nodes.celery_app import app as celery_app
from nodes.context import RoleContext
from nodes.engine import Engine
from nodes.snapshotter import verified
from nodes.state import collector_paused
from wire import rpc
from wire.keys import keys, tagged

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
INSTALL_TTL_S = 600
STALL_S = 30.0  # the log after the snapshot brings nothing for this long: ask again
READ_COUNT = 50


class SnapshotNeeded(Exception):
    """The log this node needs is no longer in any peer's archive: install a snapshot."""


class InstallFailed(Exception):
    """The snapshot or the log after it did not arrive whole, or did not verify."""


def snapshot_key(cluster: str, node: str) -> str:
    return f"{tagged(cluster)}:install:{node}"


# -- the peer's side -------------------------------------------------------------------


def publish_snapshot(
    event_log: EventLog, snapshots: SnapshotStore, redis: redis_lib.Redis, cluster: str, node: str
) -> dict[str, Any]:
    """Publish our latest snapshot and the log from its position on for `node`; what to
    expect. The snapshot is read first and its entries after: if retention cut past it
    in between (a newer snapshot came), start again with the newer one."""
    for _ in range(5):
        tail, _ = event_log.refresh_tail()
        snapshot = snapshots.latest(at_or_below=tail)
        if snapshot is None:
            raise RangeUnavailableError("no snapshot to install from", needed=1, first_available=None)
        key = snapshot_key(cluster, node)
        chunks = [snapshot.data[i : i + CHUNK_BYTES] for i in range(0, len(snapshot.data), CHUNK_BYTES)]
        with redis.pipeline(transaction=False) as pipe:
            pipe.delete(key)
            for chunk in chunks:
                pipe.rpush(key, chunk)
            pipe.expire(key, INSTALL_TTL_S)
            pipe.execute()
        try:
            count = publish_replay(event_log, redis, cluster, node, snapshot.position, tail)
        except RangeUnavailableError:
            continue
        return {
            "position": snapshot.position,
            "digest": snapshot.digest,
            "size": len(snapshot.data),
            "chunks": len(chunks),
            "end": snapshot.position + count - 1,
        }
    raise RangeUnavailableError("retention kept cutting past the latest snapshot", needed=1, first_available=None)


# -- the installing node's side --------------------------------------------------------


def install(ctx: RoleContext, source: str) -> str:
    """Replace this node's archive and state with `source`'s latest snapshot and the log
    after it; returns a status sentence. Runs on the node's loop thread."""
    state, redis, cluster, name = ctx.state, ctx.redis, ctx.view.cluster, ctx.name
    started = time.monotonic()
    ctx.set_status(f"installing a snapshot: asking {source} for its latest")
    offer = rpc.ask(celery_app, redis, cluster, source, "snapshot", timeout=120, node=name)
    position, digest, end = int(offer["position"]), str(offer["digest"]), int(offer["end"])
    data = b"".join(redis.lrange(snapshot_key(cluster, name), 0, -1))
    redis.delete(snapshot_key(cluster, name))
    if len(data) != int(offer["size"]) or not verified(data, digest):
        raise InstallFailed(
            f"the snapshot at {position} from {source} arrived with {len(data)} of {offer['size']} bytes "
            "or does not match its digest"
        )
    ctx.set_status(f"installing a snapshot from {source}: restoring position {position} ({len(data):,} bytes)")
    with collector_paused():  # a restore only builds live objects (nodes/state.py)
        engine = Engine.restore(data)  # checks the restored state against the digest too
    if engine.position != position:
        raise InstallFailed(f"the snapshot from {source} says position {position} but holds {engine.position}")

    reader = ctx.adapters.event_reader(redis, keys(cluster).replay(name))
    first = _read(ctx, reader, position - 1, end, source)
    if not first or first[0].position != position:
        raise InstallFailed(f"the log from {source} does not start at the snapshot's position {position}")
    # From here on the archive is replaced: a new id, the snapshot, the log from it.
    archive_id = state.renew_archive()
    ctx.archive_renewed()
    log.warning(
        "INSTALL: archive renewed as %s; installing %s's snapshot at position %d (digest %s) and its log to %d",
        archive_id[:8], source, position, digest[:16], end,
    )  # fmt: skip
    state.snapshots.save(position, first[0].term, digest, data)
    state.start_log_at(first)
    while state.archived < end and not ctx.stop.is_set():
        state.append(_read(ctx, reader, state.archived, end, source))
        ctx.set_status(f"installing a snapshot from {source}: log {state.archived:,} / {end:,}")
    delete_replay(redis, cluster, name)
    return (
        f"installed {source}'s snapshot at position {position} and its log to {state.archived} "
        f"in {time.monotonic() - started:.1f} s (archive {archive_id[:8]})"
    )


def _read(ctx: RoleContext, reader: EventReader, after: int, end: int, source: str) -> list:
    """The next entries after `after` (at most to `end`), waiting for them."""
    waited_from = time.monotonic()
    while not ctx.stop.is_set():
        entries = [entry for entry in reader.read(after, block_ms=200, count=READ_COUNT) if entry.position <= end]
        if entries:
            return entries
        if time.monotonic() - waited_from > STALL_S:
            raise InstallFailed(f"the log from {source} brought nothing for {STALL_S:.0f} s after position {after}")
    raise InstallFailed("stopped while installing")
