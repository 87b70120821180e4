"""The batch-nonce marks' merge rule and input checks (wire/nonces.py), pure and table-driven."""

from __future__ import annotations

import pytest

from wire.nonces import MAX_KEYS, NONCE_MAX, marks_refusal, parse_stored, raise_marks


@pytest.mark.parametrize(
    ("marks", "more", "after", "risen"),
    [
        ({}, {"k1": 5}, {"k1": 5}, {"k1": 5}),
        ({"k1": 5}, {"k1": 7}, {"k1": 7}, {"k1": 7}),
        ({"k1": 5}, {"k1": 3}, {"k1": 5}, {}),  # never lowered
        ({"k1": 5}, {"k1": 5}, {"k1": 5}, {}),  # the same mark is no news
        ({"k1": 5, "k2": 9}, {"k2": 4, "k3": 1}, {"k1": 5, "k2": 9, "k3": 1}, {"k3": 1}),
        ({"k1": 5}, {}, {"k1": 5}, {}),
    ],
)
def test_a_mark_is_the_highest_nonce_seen_and_never_goes_down(marks, more, after, risen):
    assert raise_marks(marks, more) == risen
    assert marks == after


def test_merging_in_any_order_gives_the_same_marks():
    reports = [{"k1": 3, "k2": 8}, {"k1": 9}, {"k2": 2, "k3": 4}]
    forward, backward = {}, {}
    for report in reports:
        raise_marks(forward, report)
    for report in reversed(reports):
        raise_marks(backward, report)
    assert forward == backward == {"k1": 9, "k2": 8, "k3": 4}


@pytest.mark.parametrize(
    ("data", "refused_because"),
    [
        ({}, None),
        ({"trader-1a2b3c4d": 1_790_000_000_000_000_000, "controlplane": 1}, None),
        ({"k1": NONCE_MAX}, None),
        ([["k1", 5]], "expected an object"),
        ("k1=5", "expected an object"),
        ({"k1": 0}, "must be an integer from 1"),
        ({"k1": -5}, "must be an integer from 1"),
        ({"k1": NONCE_MAX + 1}, "must be an integer from 1"),
        ({"k1": 2**70}, "must be an integer from 1"),
        ({"k1": "5"}, "must be an integer from 1"),
        ({"k1": 5.0}, "must be an integer from 1"),
        ({"k1": True}, "must be an integer from 1"),
        ({"K1": 5}, "is not a key id"),
        ({"": 5}, "is not a key id"),
        ({"k1\x00": 5}, "is not a key id"),
        ({"k\ud800": 5}, "is not a key id"),
        ({"k" * 64: 5}, "is not a key id"),
        ({f"k{index}": 1 for index in range(MAX_KEYS + 1)}, f"at most {MAX_KEYS}"),
    ],
)
def test_a_report_of_marks_is_checked_before_it_is_stored(data, refused_because):
    refusal = marks_refusal(data)
    if refused_because is None:
        assert refusal is None
    else:
        assert refused_because in refusal


def test_unreadable_fields_of_the_redis_hash_are_skipped():
    assert parse_stored({b"k1": b"12", b"k2": b"x", b"\xff": b"3"}) == {"k1": 12}
