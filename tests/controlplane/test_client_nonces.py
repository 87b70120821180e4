"""Batch-nonce marks (wire.nonces) through the control plane: a leader reports the marks it
acknowledged in its heartbeat, the control plane keeps the highest per key and never
lowers it, and hands them to whichever node leads next; a bad report is a 400."""

from __future__ import annotations

import pytest

from controlplane.clusters import services, trading
from controlplane.clusters.api.node_views import node_config
from controlplane.clusters.models import ClientNonce, Node, TradingClient
from tests.controlplane.test_node_heartbeat import REPORT, beat
from wire.nonces import NONCE_MAX

NOW_NS = 1_790_000_000_000_000_000


@pytest.fixture
def nodes(cluster) -> dict[str, str]:
    """alpha enforces trading permissions; its nodes' secrets, by name."""
    cluster.trading_checks = True
    cluster.save(update_fields=["trading_checks"])
    secrets = {}
    for node in Node.objects.filter(cluster=cluster):
        secrets[node.name] = services.new_node_secret()
        Node.objects.filter(pk=node.pk).update(credentials_hash=services.hash_node_secret(secrets[node.name]))
    return secrets


def marks(cluster) -> dict[str, int]:
    return dict(ClientNonce.objects.filter(cluster=cluster).values_list("key_id", "nonce"))


def report(nonces, seq: int) -> dict:
    return {**REPORT, "report_boot": "1", "report_seq": seq, "client_nonces": nonces}


def test_the_highest_mark_per_key_is_kept_and_never_lowered(cluster, nodes):
    assert beat("alpha-1", nodes["alpha-1"], report({"k1": NOW_NS, "k2": 5}, 1)).status_code == 200
    assert marks(cluster) == {"k1": NOW_NS, "k2": 5}
    # A deposed leader's late report and an older report of the same node: the higher stays.
    assert beat("alpha-1", nodes["alpha-1"], report({"k1": NOW_NS - 1, "k2": 6}, 2)).status_code == 200
    assert beat("alpha-2", nodes["alpha-2"], report({"k1": 3, "k3": NONCE_MAX}, 1)).status_code == 200
    assert beat("alpha-1", nodes["alpha-1"], report({"k2": 1}, 1)).status_code == 200  # older than seq 2
    assert marks(cluster) == {"k1": NOW_NS, "k2": 6, "k3": NONCE_MAX}
    assert beat("alpha-1", nodes["alpha-1"], {**REPORT}).status_code == 200  # a report without marks
    assert marks(cluster) == {"k1": NOW_NS, "k2": 6, "k3": NONCE_MAX}


def test_the_next_leader_gets_the_marks_of_live_keys_in_its_answer(cluster, nodes):
    trader = TradingClient.objects.create(name="trader")
    key, revoked = trading.new_key(trader), trading.new_key(trader)
    trading.revoke_key(revoked.key_id)
    reported = {key.key_id: NOW_NS, revoked.key_id: NOW_NS, "controlplane": NOW_NS + 1}
    assert beat("alpha-1", nodes["alpha-1"], report(reported, 1)).status_code == 200
    assert node_config(Node.objects.get(name="alpha-2"))["trading"] is None  # followers get none
    services.assign_leader(cluster, "alpha-2", actor=services.Actor("test"), reason="switchover")
    answer = beat("alpha-2", nodes["alpha-2"], report({}, 1)).json()
    assert answer["role"] == "leader"
    assert answer["trading"]["nonces"] == {key.key_id: NOW_NS, "controlplane": NOW_NS + 1}


@pytest.mark.parametrize(
    ("nonces", "field_error"),
    [
        ({"k1": 0}, "greater than or equal to 1"),
        ({"k1": -1}, "greater than or equal to 1"),
        ({"k1": 2**63}, "64-bit range"),  # the body parser's check, for every endpoint
        ({"k1": 2**200}, "64-bit range"),
        ({"k1": "soon"}, "valid integer"),
        ({"k1": 1.5}, "valid integer"),
        ({"k1": None}, "may not be null"),
        ({"k1": {"deep": 1}}, "valid integer"),
        ([1, 2], "dictionary"),
        ("k1", "dictionary"),
        ({"K1": 5}, "is not a key id"),
        ({"k1 ": 5}, "is not a key id"),
        ({"../k1": 5}, "is not a key id"),
        ({f"k{index}": 1 for index in range(10_001)}, "at most 10000"),
    ],
)
def test_a_bad_report_of_marks_is_a_400_and_stores_nothing(cluster, nodes, nonces, field_error):
    response = beat("alpha-1", nodes["alpha-1"], report(nonces, 1))
    assert response.status_code == 400, response.content
    assert field_error in str(response.json())
    assert marks(cluster) == {}
