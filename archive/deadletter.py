"""The dead-letter stream of a cluster: entries that could not be decoded, set aside with a reason.

DESIGN §4 "Poison input": an entry that cannot be decoded, on any stream a node reads
(command, live, ack, replay, peer requests), is set aside here and the loop goes on; it
never wedges the cluster. Operators see the count per stream (dashboard, API) and the
entries themselves (`XRANGE tec:{cluster}:deadletter - +`).
"""

from __future__ import annotations

import logging
import time

from redis import Redis, RedisError

from wire.keys import keys

log = logging.getLogger(__name__)

KEEP = 10_000  # entries kept in the dead-letter stream (approximately)
SAMPLE_BYTES = 512  # of each entry's raw data, enough to see what it was


class DeadLetters:
    """Sets entries aside for one node of one cluster. Never raises: a dead letter that
    cannot be written (Redis down) is logged, and the loop goes on all the same."""

    def __init__(self, redis: Redis, cluster: str, node: str) -> None:
        cluster_keys = keys(cluster)
        self._redis = redis
        self._stream = cluster_keys.deadletter
        self._counts = cluster_keys.deadletter_counts
        self._node = node
        self._warned: dict[str, float] = {}

    def set_aside(self, stream: str, entry_id: bytes | str, reason: str, raw: object = b"") -> None:
        sample = raw if isinstance(raw, bytes) else repr(raw).encode(errors="replace")
        entry = entry_id.decode(errors="replace") if isinstance(entry_id, bytes) else str(entry_id)
        now = time.monotonic()
        if now - self._warned.get(stream, -60.0) > 5.0:  # a flood of poison must not flood the log
            self._warned[stream] = now
            log.warning("set aside entry %s of %s: %s", entry, stream, reason)
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                pipe.xadd(
                    self._stream,
                    {"stream": stream, "id": entry, "reason": reason[:500], "node": self._node,
                     "data": sample[:SAMPLE_BYTES]},
                    maxlen=KEEP,
                    approximate=True,
                )  # fmt: skip
                pipe.hincrby(self._counts, stream, 1)
                pipe.execute()
        except RedisError as error:
            log.warning("could not write the dead letter for %s %s: %s", stream, entry, error)


def dead_letter_counts(redis: Redis, cluster: str) -> dict[str, int]:
    """Entries set aside so far, per stream (for the dashboard, the API and metrics)."""
    raw = redis.hgetall(keys(cluster).deadletter_counts)
    return {key.decode(): int(value) for key, value in raw.items()}
