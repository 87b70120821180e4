"""Signed acks (wire/signing.py), pure: what the leader refuses before counting an ack."""

from __future__ import annotations

import pytest

from wire import signing

KEYS = signing.ReplicationKeys("r-new", {"r-new": bytes(range(32)), "r-old": bytes(range(1, 33))})


def ack(key_id: str = "r-new", nonce: int = 5, position: int = 10, term: int = 3, secret: bytes | None = None) -> dict:
    secret = KEYS.keys[key_id] if secret is None else secret
    mac = signing.ack_mac(secret, "alpha", "n2", position, term, "arch", nonce, key_id)
    return {b"n": b"n2", b"p": str(position).encode(), b"t": str(term).encode(), b"a": b"arch",
            b"q": str(nonce).encode(), b"k": key_id.encode(), b"s": mac}  # fmt: skip


def refusal(fields: dict, nonces: dict, position: int = 10, term: int = 3):
    found = signing.ack_refusal(KEYS, "alpha", fields, "n2", position, term, "arch", nonces)
    return found[0] if found else None


def test_a_signed_ack_counts_with_the_signing_key_or_the_one_before():
    nonces: dict[str, tuple[int, int]] = {}
    assert refusal(ack("r-old", nonce=5), nonces) is None
    assert refusal(ack("r-new", nonce=6), nonces) is None
    assert nonces == {"n2": (6, 10)}


@pytest.mark.parametrize(
    ("fields", "read_as", "code"),
    [
        ({k: v for k, v in ack().items() if k not in (b"k", b"q", b"s")}, {}, signing.ACK_UNSIGNED),
        (ack(secret=bytes(32)), {}, signing.ACK_BAD_SIGNATURE),
        ({**ack(), b"k": b"r-gone"}, {}, signing.ACK_UNKNOWN_KEY),
        (ack(), {"position": 11}, signing.ACK_BAD_SIGNATURE),  # the position was changed
        (ack(), {"term": 4}, signing.ACK_BAD_SIGNATURE),  # the term was changed
        ({**ack(), b"q": b"6"}, {}, signing.ACK_BAD_SIGNATURE),  # the nonce was changed
        ({**ack(), b"q": b"x"}, {}, signing.ACK_BAD_SIGNATURE),
    ],
)  # fmt: skip
def test_forged_acks_are_refused(fields, read_as, code):
    nonces: dict[str, tuple[int, int]] = {}
    assert refusal(fields, nonces, **read_as) == code
    assert nonces == {}  # a refused ack teaches nothing


def test_a_replayed_ack_is_refused_and_the_nonce_stays():
    nonces: dict[str, tuple[int, int]] = {}
    genuine = ack(nonce=7, position=10)
    assert refusal(genuine, nonces) is None
    assert refusal(genuine, nonces) == signing.ACK_REPLAYED
    assert refusal(ack(nonce=6, position=9), nonces, position=9) == signing.ACK_REPLAYED  # an older one
    assert nonces == {"n2": (7, 10)}


def test_a_follower_restarted_on_a_clock_that_stepped_back_is_heard():
    # Its nonces (from the clock) are behind those of its earlier run, but its acks claim
    # positions past what was taken: refusing them would stall every commit needing it.
    nonces: dict[str, tuple[int, int]] = {}
    assert refusal(ack(nonce=10_000, position=10), nonces) is None
    assert refusal(ack(nonce=50, position=11), nonces, position=11) is None
    assert nonces == {"n2": (50, 11)}
    assert refusal(ack(nonce=51, position=12), nonces, position=12) is None  # and goes on
    assert refusal(ack(nonce=50, position=11), nonces, position=11) == signing.ACK_REPLAYED


def test_nonces_increase_even_when_asked_faster_than_the_clock():
    nonces = signing.AckNonces()
    taken = [nonces.next() for _ in range(1000)]
    assert taken == sorted(set(taken))


def test_no_keys_in_the_heartbeat_answer_means_none():
    assert signing.ReplicationKeys.from_view(None) is None
    assert signing.ReplicationKeys.from_view({"signing": "x", "keys": {}}) is None
    keys = signing.ReplicationKeys.from_view({"signing": "a", "keys": {"a": "00" * 32, "b": "11" * 32}})
    assert keys is not None
    assert keys.signing_key == ("a", bytes(32))
