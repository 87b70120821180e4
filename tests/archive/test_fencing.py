from __future__ import annotations

import threading

import pytest
from redis import Redis

from archive import (
    FencedError,
    RedisEventPublisher,
    RedisEventReader,
    StaleEntryError,
    get_fence,
    set_fence,
)
from tests.archive.conftest import make_entries
from wire.keys import keys


def test_fence_only_moves_up(redis: Redis, cluster: str) -> None:
    assert get_fence(redis, cluster) is None
    assert set_fence(redis, cluster, 3) == 3
    assert set_fence(redis, cluster, 2) == 3
    assert set_fence(redis, cluster, 3) == 3
    assert set_fence(redis, cluster, 5) == 5
    assert get_fence(redis, cluster) == 5


def test_missing_fence_refuses_every_publish(redis: Redis, cluster: str) -> None:
    publisher = RedisEventPublisher(redis, cluster)
    with pytest.raises(FencedError, match="fence is missing") as refused:
        publisher.publish(1, make_entries(1, 10))
    assert refused.value.current_fence is None
    assert redis.exists(keys(cluster).events) == 0


def test_old_term_is_refused_after_the_fence_moves_on(redis: Redis, cluster: str) -> None:
    set_fence(redis, cluster, 1)
    publisher = RedisEventPublisher(redis, cluster)
    publisher.publish(1, make_entries(1, 10, term=1))
    set_fence(redis, cluster, 2)
    with pytest.raises(FencedError, match="fence is at term 2") as refused:
        publisher.publish(1, make_entries(11, 10, term=1))
    assert refused.value.current_fence == 2
    assert redis.xlen(keys(cluster).events) == 1
    reader = RedisEventReader(redis, keys(cluster).events)
    assert reader.read(0, block_ms=0, count=100) == make_entries(1, 10, term=1)
    # A future term is refused as well: only the fence's term may publish.
    with pytest.raises(FencedError):
        publisher.publish(3, make_entries(11, 10, term=3))


def test_republishing_a_batch_is_refused_as_stale(redis: Redis, cluster: str) -> None:
    set_fence(redis, cluster, 1)
    publisher = RedisEventPublisher(redis, cluster)
    publisher.publish(1, make_entries(1, 10))
    with pytest.raises(
        StaleEntryError, match="entry id 10-0 is not above the stream's last id 10-0"
    ):
        publisher.publish(1, make_entries(1, 10))
    with pytest.raises(StaleEntryError):
        publisher.publish(1, make_entries(5, 3))
    assert redis.xlen(keys(cluster).events) == 1


def test_racing_publishers_only_the_current_term_lands(redis: Redis, cluster: str) -> None:
    """An old leader (term 1) and a new one (term 2) publish concurrently while the fence
    moves from 1 to 2; afterwards, no term-1 entry sits after a term-2 entry, and once the
    fence moved no term-1 entry was added."""
    set_fence(redis, cluster, 1)
    stream = keys(cluster).events
    fence_moved = threading.Event()
    refused: dict[int, int] = {1: 0, 2: 0}
    landed: dict[int, int] = {1: 0, 2: 0}
    old_after_move: list[int] = []

    def leader(term: int, first_position: int) -> None:
        # No trimming: the new leader's positions start a million further on, and trimming
        # by position would remove the old leader's entries this test counts.
        publisher = RedisEventPublisher(redis, cluster, maxlen=0)
        position = first_position
        attempts_after_move = 0
        while attempts_after_move < 50:
            moved_before = fence_moved.is_set()
            try:
                publisher.publish(term, make_entries(position, 5, term=term, size=16))
            except FencedError:
                refused[term] += 1
            else:
                landed[term] += 1
                if term == 1 and moved_before:
                    old_after_move.append(position)
            if moved_before:
                attempts_after_move += 1
            position += 5

    def control_plane() -> None:
        # Move the fence while both leaders are publishing.
        while redis.xlen(stream) < 20:
            pass
        set_fence(redis, cluster, 2)
        fence_moved.set()

    threads = [
        threading.Thread(target=leader, args=(1, 1)),
        threading.Thread(target=leader, args=(2, 1_000_001)),
        threading.Thread(target=control_plane),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert old_after_move == []
    terms = [int(fields[b"term"]) for _id, fields in redis.xrange(stream)]
    assert terms.count(1) == landed[1] >= 1
    assert terms.count(2) == landed[2] >= 50
    first_new = terms.index(2)
    assert set(terms[first_new:]) == {2}, "an old-term entry landed after the fence moved"
    assert refused[1] >= 50  # every term-1 attempt after the move


def test_the_fenced_delivery_raises_the_nonce_marks_and_never_lowers_them(redis: Redis, cluster: str) -> None:
    """Marks travel with the acknowledgement of their batches: only while the fence is at
    the term, only upwards, compared as numbers past 2^53 (where Lua's would round)."""
    import wire
    from archive import FencedWrites

    set_fence(redis, cluster, 2)
    writes = FencedWrites(redis, cluster)
    commands = wire.commands_key(cluster)
    redis.xgroup_create(commands, wire.LEADER_GROUP, id="0", mkstream=True)
    reply = wire.reply_key(cluster, "c1")
    big = 1_790_000_000_000_000_001

    def deliver(term: int, nonces: dict[str, int]) -> tuple:
        command_id = redis.xadd(commands, {"r": reply, "c": b"x"})
        return writes.deliver(term, {reply: [b"result"]}, commands_key=commands, group=wire.LEADER_GROUP,
                              command_ids=[command_id], reply_ttl=60, nonces=nonces)  # fmt: skip

    def marks() -> dict[str, int]:
        return {key.decode(): int(value) for key, value in redis.hgetall(keys(cluster).nonces).items()}

    assert deliver(2, {"k1": big, "k2": 5}) == ("ok", None)
    assert marks() == {"k1": big, "k2": 5}
    assert deliver(2, {"k1": big - 1, "k2": 40}) == ("ok", None)
    assert marks() == {"k1": big, "k2": 40}
    assert deliver(2, {"k1": 9}) == ("ok", None)  # fewer digits, not lower
    assert deliver(2, {}) == ("ok", None)
    assert marks() == {"k1": big, "k2": 40}
    set_fence(redis, cluster, 3)
    assert deliver(2, {"k1": big + 1})[0] == "deposed"
    assert marks() == {"k1": big, "k2": 40}
    assert redis.llen(reply) == 4
