"""Retention on a node: delete what its archive no longer needs, from a thread of its own.

The decision is nodes.protocol.retention.cut (latest verified snapshot, the lowest
position a live member holds, the minimum window); this thread measures the archive,
verifies the latest snapshot (its bytes hash to its digest), and deletes below the cut
in small steps, each its own short transaction, so the loop's appends (which take the
same writer lock) never wait long. It runs on connections of its own: the loop thread
keeps appending meanwhile.
"""

from __future__ import annotations

import logging
import threading

from archive import EventLog, LogSize, SnapshotStore
from nodes.context import Phase, RoleContext
from nodes.protocol import retention
from nodes.snapshotter import verified

log = logging.getLogger(__name__)

INTERVAL_S = 2.0
STEP_EVENTS = 50_000  # events deleted per transaction
# The archive's deleted space is made reusable (EventLog.reclaim, a VACUUM) once the
# events deleted since the last time reach this share of those it holds (as autovacuum's
# default scale factor does), and at least STEP_EVENTS.
RECLAIM_SHARE = 0.2


class Retention:
    """Measures and trims one node's archive (at `location`) every INTERVAL_S until stopped."""

    def __init__(self, ctx: RoleContext, location: str) -> None:
        self.ctx = ctx
        self.location = location
        self.size: LogSize | None = None  # the archive as last measured (reported in heartbeats)
        # The latest verified snapshot, as of `size`: set after the round's deletes, after
        # `size`, so a report never pairs a new snapshot with the size from before the cut
        # it allows (verifying a large snapshot and deleting below it take seconds).
        self.snapshot_position = 0
        self.deleted = 0  # events deleted since this process started
        self.unreclaimed = 0  # events deleted since the last reclaim
        self.status = ""
        self._verified: tuple[int, str] | None = None  # (position, digest) checked already
        self._log: EventLog | None = None
        self._snapshots: SnapshotStore | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, name=f"retention-{ctx.name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                if self.ctx.phase() is not Phase.INSTALLING:
                    try:
                        self.status = self.run_once()
                    except Exception as error:  # a database outage, a bug: say so, retry next round
                        self.status = f"retention failed, retrying: {type(error).__name__}: {error}"
                        log.warning("%s", self.status)
                        self._close()
                self.stopping.wait(INTERVAL_S)
        finally:
            self._close()

    def run_once(self) -> str:
        """One round: measure, verify the latest snapshot, delete below the cut."""
        view = self.ctx.view
        event_log, snapshots = self._stores()
        size = event_log.size()
        snapshot = self._latest_verified(snapshots, size.last)
        floor = view.retention_floor if view is not None else None
        keep = view.keep_events if view is not None else 0
        cut = retention.cut(first=size.first, tail=size.last, snapshot=snapshot, floor=floor, keep_events=keep)
        deleted, position = 0, size.first
        while position < cut and not self.stopping.is_set():
            position = min(cut, position + STEP_EVENTS)
            deleted += event_log.delete_before(position, keep_from_bound=floor + 1)
        if deleted:
            self.deleted += deleted
            self.unreclaimed += deleted
            if self.unreclaimed >= max(STEP_EVENTS, RECLAIM_SHARE * (size.last - cut + 1)):
                event_log.reclaim()
                self.unreclaimed = 0
            size = event_log.size()
            log.info(
                "retention: deleted %d events below position %d (snapshot at %d, lowest live member at %s, "
                "keeping at least %d); the archive holds %d..%d",
                deleted, cut, snapshot, floor, keep, size.first, size.last,
            )  # fmt: skip
        self.size = size
        self.snapshot_position = snapshot or 0
        return f"archive holds {size.events} events ({size.first}..{size.last}), {size.bytes} bytes"

    def _latest_verified(self, snapshots: SnapshotStore, tail: int) -> int | None:
        """The position of the latest snapshot at or below the tail whose bytes hash to its
        digest (checked once per snapshot), None if there is none."""
        infos = [info for info in snapshots.list() if info.position <= tail]
        if not infos:
            return None
        newest = infos[0]
        if self._verified != (newest.position, newest.digest):
            stored = snapshots.latest(at_or_below=newest.position)
            if stored is None or not verified(stored.data, stored.digest):
                # Start-up would restore this one: cut nothing until a good one is taken.
                log.error("retention: the snapshot at %d does not match its digest; deleting nothing", newest.position)
                return None
            self._verified = (newest.position, newest.digest)
        return self._verified[0]

    def _stores(self) -> tuple[EventLog, SnapshotStore]:
        if self._log is None:
            self._log = self.ctx.adapters.event_log(self.location)
            self._snapshots = self.ctx.adapters.snapshot_store(self.location)
        return self._log, self._snapshots

    def forget(self) -> None:
        """The archive was renewed (a snapshot install): nothing checked before holds."""
        self._verified = None
        self.snapshot_position = 0

    def _close(self) -> None:
        for store in (self._log, self._snapshots):
            if store is not None:
                store.close()
        self._log = self._snapshots = None
