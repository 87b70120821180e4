"""Replay publishing: a range of the archive, re-published on one follower's replay stream."""

from __future__ import annotations

from collections.abc import Callable

from redis import Redis

from archive.errors import RangeUnavailableError
from archive.ports import EventLog
from archive.publisher import RedisEventPublisher
from archive.streamformat import EVENTS, FIRST, TERM, encode_events, entry_id, signature
from wire.keys import keys

REPLAY_TTL_S = 3600


def publish_replay(
    log: EventLog,
    redis: Redis,
    cluster: str,
    node: str,
    start: int,
    end: int | None = None,
    term_check: int | None = None,
    *,
    entry_events: int = 1000,
    ttl_s: int = REPLAY_TTL_S,
    started: Callable[[], None] | None = None,
    key: tuple[str, bytes] | None = None,
) -> int:
    """Publish positions start..end (to the archive's tail if end is None) from `log` on
    `tec:{cluster}:replay:{node}`, in the live stream's entry format, so a RedisEventReader
    on that key reads them; return how many events were published.

    The replay stream is recreated from scratch and expires after ttl_s unless deleted
    (delete_replay) earlier. With term_check, every entry is written by the fenced script
    and the replay stops with FencedError once the cluster's fence leaves that term.
    Raises RangeUnavailableError (before writing anything) if the archive no longer holds
    `start`. Fewer events than end - start + 1 means the archive's tail is below end.
    `started()` is called once the first events are on the stream (or, with none to
    publish, at the end): from then on the range is known to be there, and a reader may
    read while the rest is published.
    key: (key id, secret) to sign each entry with (streamformat.entry_mac), or None.
    """
    stream = keys(cluster).replay(node)
    redis.delete(stream)
    fenced = (
        RedisEventPublisher(redis, cluster, maxlen=0, stream_key=stream)
        if term_check is not None
        else None
    )
    count = 0
    for batch in log.read(start, end, batch_size=entry_events * 5):
        if count == 0 and batch[0].position != start:
            raise RangeUnavailableError(
                f"the archive no longer holds position {start}; its first is {batch[0].position}",
                needed=start,
                first_available=batch[0].position,
            )
        chunks = [batch[i : i + entry_events] for i in range(0, len(batch), entry_events)]
        if fenced is not None and term_check is not None:
            for chunk in chunks:
                fenced.publish(term_check, chunk, key)
        else:
            with redis.pipeline(transaction=False) as pipe:
                for chunk in chunks:
                    term, first, last, events = chunk[-1].term, chunk[0].position, chunk[-1].position, encode_events(chunk)
                    fields = {TERM: term, FIRST: first, EVENTS: events, **signature(key, stream, term, first, last, events)}
                    pipe.xadd(stream, fields, id=entry_id(last))
                pipe.expire(stream, ttl_s)
                pipe.execute()
        if count == 0:
            redis.expire(stream, ttl_s)
            if started is not None:
                started()
        count += len(batch)
    if count == 0 and started is not None:
        started()
    return count


def delete_replay(redis: Redis, cluster: str, node: str) -> None:
    """Remove a follower's replay stream once it has caught up."""
    redis.delete(keys(cluster).replay(node))
