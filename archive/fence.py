"""The cluster's fence: the current term in Redis, which only ever moves up."""

from __future__ import annotations

from redis import Redis

from wire.keys import keys

# Compare-and-set in one atomic step: two control-plane processes racing to set the
# fence can never move it down, whatever order their calls arrive in.
_SET_FENCE = """
local current = tonumber(redis.call('GET', KEYS[1]))
local term = tonumber(ARGV[1])
if current == nil or term > current then
    redis.call('SET', KEYS[1], ARGV[1])
    return term
end
return current
"""


def set_fence(redis: Redis, cluster: str, term: int) -> int:
    """Raise the cluster's fence to `term` if it is higher (or the fence is missing);
    return the fence now in force (term, or a higher term already set)."""
    if term < 1:
        raise ValueError(f"term must be >= 1, got {term}")
    return int(redis.register_script(_SET_FENCE)(keys=[keys(cluster).fence], args=[int(term)]))


def get_fence(redis: Redis, cluster: str) -> int | None:
    """The cluster's current fence, None if it is missing (Redis lost it)."""
    value = redis.get(keys(cluster).fence)
    return None if value is None else int(value)


# The fence may only come down to the database's term when it is above it, which no
# role change of ours leaves behind (the database commits first): a Redis that kept the
# fence of a control-plane database since recreated. Checked and written in one step.
_LOWER_FENCE = """
local current = tonumber(redis.call('GET', KEYS[1]))
local term = tonumber(ARGV[1])
if current ~= nil and current > term then
    redis.call('SET', KEYS[1], ARGV[1])
    return current
end
return 0
"""


def lower_fence(redis: Redis, cluster: str, term: int) -> int | None:
    """Bring a fence that is above `term` down to it; returns the value it had, or None.

    Only with `term` read under the cluster's row lock: a stale term would re-open a
    term that has ended."""
    previous = int(redis.register_script(_LOWER_FENCE)(keys=[keys(cluster).fence], args=[int(term)]))
    return previous or None
