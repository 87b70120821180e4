"""Reading published batches from a Redis stream by log position, never skipping one."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from redis import Redis

from archive.entries import LogEntry
from archive.errors import TrimmedError
from archive.streamformat import EVENTS, FIRST, decode_events, entry_id, entry_refusal, position_of
from wire.redisconn import DirectConnection, stream_entries


class RedisEventReader:
    """EventReader adapter (see archive.ports.EventReader) on one stream key: the live
    stream (keys(cluster).events) or a replay stream (keys(cluster).replay(node)).

    block_ms <= 0 polls without blocking. The Redis client must not decode responses.
    `keys`, when given, returns the replication keys (key id -> secret) entries must be
    signed with, or None when they need not be: an entry whose signature does not hold is
    rejected like a malformed one, never returned.
    """

    def __init__(
        self,
        redis: Redis,
        stream_key: str,
        line: DirectConnection | None = None,
        keys: Callable[[], Mapping[str, bytes] | None] | None = None,
    ) -> None:
        if redis.get_connection_kwargs().get("decode_responses"):
            raise ValueError("RedisEventReader needs a Redis client with decode_responses=False")
        self._redis = redis
        self._line = line or DirectConnection(redis)  # the reads; a loop may share its own
        self.stream_key = stream_key
        # Entries that could not be decoded or whose signature does not hold, skipped:
        # (entry id, code, reason, raw fields); code is "malformed" or one of
        # streamformat.entry_refusal's. The caller sets them aside (archive.deadletter)
        # and empties the list.
        self.rejected: list[tuple[bytes, str, str, object]] = []
        self._keys = keys
        self._past_poison: bytes | None = None  # the last poison entry read: read after it

    def read(self, after_position: int, block_ms: int, count: int) -> list[LogEntry]:
        reply = self._line.call(*self.read_command(after_position, block_ms, count))
        return self.entries(reply, after_position)

    def read_command(self, after_position: int, block_ms: int, count: int) -> tuple:
        """The XREAD of read(), to send on a DirectConnection (pipelined with an ack)."""
        start = entry_id(after_position)
        if self._past_poison is not None and _id(self._past_poison) > (after_position, 0):
            # Poison after our position was set aside already: read past it, or the
            # read would return it at once, every time, instead of waiting.
            start = self._past_poison
        if block_ms > 0:
            return ("XREAD", "COUNT", count, "BLOCK", block_ms, "STREAMS", self.stream_key, start)
        return ("XREAD", "COUNT", count, "STREAMS", self.stream_key, start)

    def entries(self, reply, after_position: int) -> list[LogEntry]:
        """The events after `after_position` in the raw reply of read_command()."""
        expected = after_position + 1
        events: list[LogEntry] = []
        keys = self._keys() if self._keys is not None else None
        for stream_id, fields in stream_entries(reply):
            try:
                first, batch = _checked_batch(stream_id, fields)
            except (KeyError, ValueError, TypeError) as error:
                # Poison (DESIGN §4): not a batch a leader published. Skip it; a real gap
                # it may hide shows as a hole in positions, which the reads below catch
                # (the follower catches up from the leader's archive).
                self.rejected.append((stream_id, "malformed", f"{type(error).__name__}: {error}", fields))
                self._past_poison = stream_id
                continue
            if keys is not None:  # one MAC an entry (a leader's batch), never one an event
                refusal = entry_refusal(keys, self.stream_key, stream_id, fields)
                if refusal is not None:  # well-formed but not the leader's: poison too
                    code, reason = refusal
                    self.rejected.append((stream_id, code, reason, fields))
                    self._past_poison = stream_id
                    continue
            if first > expected:
                if not events:
                    raise TrimmedError(needed=expected, first_available=first)
                break  # a hole after what we got: return that; the next read raises
            if batch[-1].position < expected:
                continue  # all of it already had
            events.extend(batch[expected - first :] if first < expected else batch)
            expected = events[-1].position + 1
        return events

    def first_last_positions(self) -> tuple[int, int] | None:
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.xrange(self.stream_key, count=1)
            pipe.xrevrange(self.stream_key, count=1)
            head, tail = pipe.execute()
        if not head or not tail:
            return None
        return int(head[0][1][FIRST]), position_of(tail[0][0])


def _checked_batch(stream_id: bytes, fields: dict) -> tuple[int, list[LogEntry]]:
    """A published batch: contiguous positions from `first` to the entry id's position."""
    first = int(fields[FIRST])
    batch = decode_events(fields[EVENTS])
    if not batch:
        raise ValueError("an empty batch")
    last = position_of(stream_id)
    if batch[0].position != first or batch[-1].position != last or last - first + 1 != len(batch):
        raise ValueError(f"positions {batch[0].position}..{batch[-1].position} do not match first {first}, id {last}")
    for expected, entry in enumerate(batch, start=first):
        if entry.position != expected:
            raise ValueError(f"position {entry.position} where {expected} was expected")
    return first, batch


def _id(stream_id: bytes | str) -> tuple[int, int]:
    text = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)
