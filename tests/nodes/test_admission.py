"""The leader's admission of signed batches and of each command (wire/admission.py), pure."""

from __future__ import annotations

import pytest

import wire
from nodes.engine import AddInstrument, CancelOrder, PlaceOrder, Side
from wire import signing
from wire.admission import (
    REFUSED_BAD_SIGNATURE,
    REFUSED_REPLAYED,
    REFUSED_UNKNOWN_KEY,
    REFUSED_UNSIGNED,
    Admission,
    Grant,
)

SECRET = bytes(range(32))
REPLY = wire.reply_key("alpha", "trader-1")
POLICY = {"enforced": True, "keys": {"k1": {"client": "trader", "secret": SECRET.hex(), "accounts": ["a1"]}}}


def place(client_id: str = "trader", account: str = "a1") -> PlaceOrder:
    return PlaceOrder(client_id=client_id, client_seq=1, account=account, symbol="S", side=Side.BUY, qty=1, price=1)


@pytest.mark.parametrize(
    ("grant", "command", "refused_because"),
    [
        (Grant("trader", frozenset({"a1"})), place(), None),
        (Grant("trader", frozenset({"a1"})), place("trader.desk-2"), None),
        (Grant("trader", frozenset({"a1"})), place(account="a2"), "not granted account 'a2'"),
        (Grant("trader", frozenset({"a1"})), CancelOrder(client_id="trader", client_seq=2, account="a2", order_id=7),
         "not granted account 'a2'"),
        (Grant("trader", frozenset({"a1"})), place("other"), "not in the namespace of client trader"),
        (Grant("trader", frozenset({"a1"})), place("traderx"), "not in the namespace of client trader"),
        (Grant("trader", frozenset({"a1"})), AddInstrument(client_id="trader", client_seq=3, symbol="X"),
         "may not manage instruments"),
        (Grant("ops", instruments=True), AddInstrument(client_id="ops", client_seq=3, symbol="X"), None),
        (Grant("controlplane", trusted=True), place("anyone", "any"), None),
    ],
)  # fmt: skip
def test_grant_refusals(grant, command, refused_because):
    reason = grant.refusal(command)
    if refused_because is None:
        assert reason is None
    else:
        assert refused_because in reason


def entry(nonce: int = 1, secret: bytes = SECRET, key_id: str = "k1", commands: bytes = b"\x91\xc4\x01x") -> dict:
    signer = signing.BatchSigner("alpha", key_id, secret)
    signer._nonce = nonce - 1
    signer.next_nonce = lambda: str(nonce).encode()
    fields = {"r": REPLY, "c": commands, **signer.fields(REPLY, commands)}
    return {key.encode(): value.encode() if isinstance(value, str) else value for key, value in fields.items()}


def admission() -> Admission:
    made = Admission.from_policy("alpha", POLICY)
    assert made is not None
    return made


def test_a_well_signed_batch_gets_its_clients_grant():
    verdict = admission().admit(entry(), REPLY)
    assert verdict.grant == Grant("trader", frozenset({"a1"}))


def test_no_policy_or_not_enforced_means_no_admission():
    assert Admission.from_policy("alpha", None) is None
    assert Admission.from_policy("alpha", {"enforced": False}) is None


@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        (lambda fields: {k: v for k, v in fields.items() if k not in (b"k", b"n", b"s")}, REFUSED_UNSIGNED),
        (lambda fields: {**fields, b"c": fields[b"c"] + b"!"}, REFUSED_BAD_SIGNATURE),
        (lambda fields: {**fields, b"n": b"2"}, REFUSED_BAD_SIGNATURE),
        (lambda fields: {**fields, b"s": bytes(32)}, REFUSED_BAD_SIGNATURE),
        (lambda fields: {**fields, b"k": b"k9"}, REFUSED_UNKNOWN_KEY),
    ],
)
def test_unsigned_tampered_or_unknown_batches_are_refused(tamper, code):
    verdict = admission().admit(tamper(entry()), REPLY)
    assert verdict.grant is None
    assert verdict.code == code


def test_a_batch_signed_for_another_reply_list_or_cluster_is_refused():
    other_reply = wire.reply_key("alpha", "victim-1")
    assert admission().admit(entry(), other_reply).code == REFUSED_BAD_SIGNATURE
    moved = Admission.from_policy("beta", POLICY)
    assert moved.admit(entry(), REPLY).code == REFUSED_BAD_SIGNATURE


def test_a_wrong_secret_is_a_bad_signature():
    assert admission().admit(entry(secret=bytes(32)), REPLY).code == REFUSED_BAD_SIGNATURE


def test_a_replayed_batch_is_refused_and_nonces_survive_a_new_policy():
    checks = admission()
    assert checks.admit(entry(nonce=5), REPLY).grant is not None
    assert checks.admit(entry(nonce=5), REPLY).code == REFUSED_REPLAYED
    assert checks.admit(entry(nonce=4), REPLY).code == REFUSED_REPLAYED
    renewed = Admission.from_policy("alpha", POLICY, checks)  # the next heartbeat answer
    assert renewed.admit(entry(nonce=5), REPLY).code == REFUSED_REPLAYED
    assert renewed.admit(entry(nonce=6), REPLY).grant is not None


def test_nonces_increase_even_when_the_clock_steps_back(monkeypatch):
    signer = signing.BatchSigner("alpha", "k1", SECRET)
    monkeypatch.setattr(signing.time, "time_ns", lambda: 1000)
    first = int(signer.next_nonce())
    monkeypatch.setattr(signing.time, "time_ns", lambda: 10)
    assert int(signer.next_nonce()) == first + 1


def test_a_new_leader_starts_from_the_marks_of_earlier_terms():
    """Marks read from Redis when the term began and those the control plane hands over in
    the policy: the higher of both counts, and the leader's own nonces carry on above them."""
    policy = {**POLICY, "nonces": {"k1": 7}}
    from_redis = Admission.from_policy("alpha", policy, marks={"k1": 9})
    assert from_redis.admit(entry(nonce=9), REPLY).code == REFUSED_REPLAYED
    assert from_redis.admit(entry(nonce=10), REPLY).grant is not None
    from_policy = Admission.from_policy("alpha", policy, marks={"k1": 3})
    assert from_policy.admit(entry(nonce=7), REPLY).code == REFUSED_REPLAYED
    assert from_policy.admit(entry(nonce=8), REPLY).grant is not None
    renewed = Admission.from_policy("alpha", {**POLICY, "nonces": {"k1": 5}}, from_policy)  # an older mark
    assert renewed.admit(entry(nonce=8), REPLY).code == REFUSED_REPLAYED  # not lowered


def test_an_admitted_batch_names_its_key_and_nonce_for_the_marks():
    verdict = admission().admit(entry(nonce=42), REPLY)
    assert (verdict.key_id, verdict.nonce) == ("k1", 42)


@pytest.mark.parametrize("nonce", [0, 2**63])
def test_a_nonce_outside_a_bigint_is_refused(nonce):
    assert admission().admit(entry(nonce=nonce), REPLY).code == REFUSED_BAD_SIGNATURE
