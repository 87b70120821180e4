"""The follower's loop: read the leader's events, archive them, acknowledge, apply.

It reads the live stream from its archived position + 1. When that position has been
trimmed away, it asks the leader's archive to replay the missing range on a stream of
its own, reads it as the leader publishes it, and goes back to the live stream exactly
where it stopped reading the replay: at the replay's end, or earlier, as soon as its
position is well inside the live stream's window again (no gap, no duplicate: the
archive refuses both anyway).
"""

from __future__ import annotations

import logging
import time

import wire
from archive import RedisEventReader, TrimmedError, delete_replay
from archive.fenced import verdict
from nodes.celery_app import app as celery_app
from nodes.context import RoleContext
from nodes.install import SnapshotNeeded
from nodes.protocol.fencing import FenceVerdict
from wire import rpc, signing
from wire.keys import keys

log = logging.getLogger(__name__)

READ_COUNT = 50  # stream entries a read; each entry is one leader batch
CATCH_UP_STALL_S = 10.0  # a replay that brings nothing for this long is asked for again
# A catch-up goes back to live once its position is past this share of the live stream's
# window (oldest to newest): the oldest part is next to be trimmed.
LIVE_AGAIN_AT = 0.25


class Follower:
    """Follows one leader in one term; recreated when either changes."""

    def __init__(self, ctx: RoleContext, term: int, leader: str) -> None:
        self.ctx = ctx
        self.term = term
        self.leader = leader
        self.cluster = ctx.view.cluster
        self.redis = ctx.redis
        cluster_keys = keys(self.cluster)
        # One connection of our own for the loop: each cycle is one round trip, the ack
        # of what we archived and the next read sent together (wire.redisconn).
        self.line = ctx.adapters.line(self.redis, ctx.stats)
        self.live = ctx.adapters.event_reader(
            self.redis, wire.events_key(self.cluster, term), line=self.line, keys=self._replication_keys
        )
        self.replay_key = cluster_keys.replay(ctx.name)
        self.acks_key = wire.acks_key(self.cluster)
        self.fenced = ctx.adapters.fenced_writes(self.redis, self.cluster)
        self.dead_letters = ctx.adapters.dead_letters(self.redis, self.cluster, ctx.name)
        self.fence_refused: str = ""  # why our last ack was refused, for the status
        self._read_after: int | None = None  # a read is in flight, from this position
        self._ack_nonces = ctx.ack_nonces  # one per process: they must increase across terms

    def _replication_keys(self) -> dict[str, bytes] | None:
        """The keys entries must be signed with: every published entry is, once the control
        plane hands out keys."""
        keys = self.ctx.view.replication_keys
        return keys.keys if keys is not None else None

    def stop(self) -> None:
        """Drop our connection (and the read in flight on it, if any)."""
        self.line.close()
        self._read_after = None

    def cycle(self) -> str:
        state = self.ctx.state
        if self._read_after is None:
            self._send_ack_and_read()
        after = self._read_after
        try:
            entries = self._receive_ack_and_read()
        except TrimmedError as trimmed:
            return self.catch_up(trimmed)
        finally:
            self._set_aside(self.live, "events")
        if not entries:
            # Idle: the next cycle repeats the ack, so a new leader learns where we are.
            if self.fence_refused:
                return f"follower of {self.leader} (term {self.term}): {self.fence_refused}"
            return f"follower of {self.leader} (term {self.term}): up to date at position {after}"
        self.store(entries)
        return f"follower of {self.leader} (term {self.term}): archived up to {state.position}"

    def _send_ack_and_read(self) -> None:
        """Ack our archived position and ask for what follows it, in one round trip."""
        after = self.ctx.state.archived
        self.line.send((self._ack_command(), self.live.read_command(after, block_ms=100, count=READ_COUNT)))
        self._read_after = after

    def _receive_ack_and_read(self) -> list:
        after, self._read_after = self._read_after, None
        ack, reply = self.line.receive(2)
        self._ack_verdict(ack)
        return self.live.entries(reply, after)

    def _set_aside(self, reader: RedisEventReader, stream: str) -> None:
        while reader.rejected:
            entry_id, code, reason, fields = reader.rejected.pop()
            name = stream if code == "malformed" else f"{stream}.{code}"
            self.ctx.stats.count_rejected(name)
            self.dead_letters.set_aside(name, entry_id, reason, fields)

    def store(self, entries: list, live: bool = True) -> None:
        # In the live stream of term T every entry is of term T (the fence saw to it);
        # an older one could only be a deposed leader's: keep what comes before it and
        # drop the rest. A replay from the leader's archive legitimately holds older
        # terms it inherited.
        if live:
            stale = next((i for i, entry in enumerate(entries) if entry.term < self.term), None)
            if stale is not None:
                log.warning(
                    "ignoring %d events of a term older than %d from position %d of the live stream",
                    len(entries) - stale, self.term, entries[stale].position,
                )  # fmt: skip
                entries = entries[:stale]
                if not entries:
                    time.sleep(0.1)
                    return
        state = self.ctx.state
        state.append(entries)
        stats = self.ctx.stats
        stats.cycles += 1
        stats.items += len(entries)
        stats.appends += 1
        if live:
            # The ack and the next read go out now and travel while we apply the batch.
            self._send_ack_and_read()
        else:
            self.acknowledge()
        state.engine.apply_records([entry.payload for entry in entries])
        self.ctx.after_batch()

    def acknowledge(self) -> None:
        """Ack our archived position, fenced: an ack of our term enters the ack stream
        only while the fence is at it (archive/fenced.py), with our archive's id so that
        a reset archive's acks never stand for the old one's."""
        if self._read_after is not None:
            self._receive_ack_and_read()  # a read in flight: its reply first (not used)
        self._ack_verdict(self.line.call(*self._ack_command()))

    def _ack_command(self) -> tuple:
        state = self.ctx.state
        name, position, archive_id = self.ctx.config.name, state.archived, state.archive_id
        fields: dict = {"n": name, "p": position, "t": self.term, "a": archive_id}
        keys = self.ctx.view.replication_keys
        if keys is not None:  # one MAC an ack (wire.signing): the leader counts no other
            nonce = self._ack_nonces.next()
            fields["q"] = nonce
            fields["k"] = keys.signing
            fields["s"] = signing.ack_mac(keys.signing_secret, self.cluster, name, position, self.term, archive_id, nonce, keys.signing)
        return self.fenced.acknowledge_command(self.line, self.term, self.acks_key, fields)

    def _ack_verdict(self, reply) -> None:
        status, fence = verdict(reply)
        if status == FenceVerdict.OK:
            self.fence_refused = ""
        else:
            self.fence_refused = f"ack of term {self.term} refused: the fence is {status} ({fence})"

    def catch_up(self, trimmed: TrimmedError) -> str:
        """Replay the missing range from the leader's archive, then resume live."""
        start = self.ctx.state.position + 1
        log.warning(
            "position %d is not in the live stream (it starts at %d): catching up from %s's archive",
            start,
            trimmed.first_available,
            self.leader,
        )
        try:
            end = rpc.ask(
                celery_app, self.redis, self.cluster, self.leader, "replay", timeout=60,
                start=start, node=self.ctx.config.name,
            )  # fmt: skip
        except rpc.BelowRetention as below:
            raise SnapshotNeeded(f"position {start} is no longer in {self.leader}'s archive ({below})") from below
        reader = self.ctx.adapters.event_reader(self.redis, self.replay_key, keys=self._replication_keys)
        progress_at = time.monotonic()
        state = self.ctx.state
        while state.position < end and not self.ctx.stop.is_set():
            entries = reader.read(state.position, block_ms=200, count=READ_COUNT)
            self._set_aside(reader, "replay")
            if entries:
                self.store([entry for entry in entries if entry.position <= end], live=False)
                progress_at = time.monotonic()
                if self._back_in_window():
                    break
            elif time.monotonic() - progress_at > CATCH_UP_STALL_S:
                # The replay stream is gone (Redis flushed, expired) or its peer died:
                # every wait has a way back (DESIGN §4 "No wedges"): re-read the role, ask again.
                raise rpc.PeerUnavailable(
                    f"the replay from {self.leader} brought nothing for {CATCH_UP_STALL_S:.0f} s "
                    f"at position {state.position} of {end}; asking again"
                )
        delete_replay(self.redis, self.cluster, self.ctx.config.name)
        return (
            f"follower of {self.leader} (term {self.term}): caught up from the archive "
            f"to position {self.ctx.state.position}"
        )

    def _back_in_window(self) -> bool:
        """Our next position is well inside the live stream's window: reading on from
        there needs no more of the leader's archive (and a read or two, not a replay of
        everything the leader wrote while we caught up)."""
        window = self.live.first_last_positions()
        if window is None:
            return False
        first, last = window
        return self.ctx.state.position + 1 >= first + int((last - first) * LIVE_AGAIN_AT)
