"""Signed stream entries (archive/streamformat.py entry_mac, entry_refusal) through a real
Redis stream: the publisher signs, the reader returns only what verifies and sets the rest
aside with a code."""

from __future__ import annotations

import pytest

from archive import RedisEventPublisher, RedisEventReader
from archive.entries import LogEntry
from archive.streamformat import EVENTS, FIRST, TERM, encode_events, entry_mac
from wire.keys import keys

SECRET = bytes(range(32))


@pytest.fixture
def setup(redis, cluster):
    redis.set(keys(cluster).fence, 1)
    return redis, cluster


def entries(first: int, last: int) -> list[LogEntry]:
    return [LogEntry(p, 1, 1, 0, b"e%d" % p) for p in range(first, last + 1)]


def test_the_reader_returns_signed_entries_and_sets_aside_the_rest(setup):
    redis, cluster = setup
    publisher = RedisEventPublisher(redis, cluster)
    stream = publisher.stream_key
    publisher.publish(1, entries(1, 2), ("k1", SECRET))
    genuine = redis.xrange(stream)[0][1]
    redis.xadd(stream, genuine, id="2-1")  # replayed under another id
    forged = {TERM: b"1", FIRST: b"3", EVENTS: encode_events(entries(3, 3))}
    redis.xadd(stream, forged, id="3-0")  # unsigned
    redis.xadd(stream, {**forged, b"k": b"k1", b"s": entry_mac(bytes(32), stream, "3-1", b"1", b"3", forged[EVENTS])}, id="3-1")
    redis.xadd(stream, {**forged, b"k": b"k9", b"s": bytes(32)}, id="3-2")
    moved = entry_mac(SECRET, stream + "x", "3-3", b"1", b"3", forged[EVENTS])  # signed for another stream
    redis.xadd(stream, {**forged, b"k": b"k1", b"s": moved}, id="3-3")
    publisher.publish(1, entries(3, 4), ("k1", SECRET))

    reader = RedisEventReader(redis, stream, keys=lambda: {"k1": SECRET})
    got = reader.read(0, block_ms=0, count=100)
    assert [entry.position for entry in got] == [1, 2, 3, 4]
    assert got[2].payload == b"e3"  # the leader's, not the forged one
    codes = {entry_id.decode(): code for entry_id, code, _reason, _fields in reader.rejected}
    assert codes == {"2-1": "replayed", "3-0": "unsigned", "3-1": "bad_signature", "3-2": "unknown_key", "3-3": "bad_signature"}


def test_without_keys_nothing_is_checked(setup):
    redis, cluster = setup
    publisher = RedisEventPublisher(redis, cluster)
    publisher.publish(1, entries(1, 2))
    assert [e.position for e in RedisEventReader(redis, publisher.stream_key, keys=lambda: None).read(0, 0, 10)] == [1, 2]
    unchecked = RedisEventReader(redis, publisher.stream_key).read(0, 0, 10)
    assert [e.position for e in unchecked] == [1, 2]


def test_a_reader_with_keys_refuses_an_unsigned_stream(setup):
    redis, cluster = setup
    publisher = RedisEventPublisher(redis, cluster)
    publisher.publish(1, entries(1, 2))
    reader = RedisEventReader(redis, publisher.stream_key, keys=lambda: {"k1": SECRET})
    assert reader.read(0, 0, 10) == []
    assert [code for _id, code, _r, _f in reader.rejected] == ["unsigned"]
