"""Trading permissions on the API: a user trades only as its trading client, for its granted
accounts and its own client ids; refusals name the reason and nothing reaches the log.
The leader gets the client keys in its heartbeat answer; auditors read the audit."""

from __future__ import annotations

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import Group, User
from rest_framework.test import APIClient

import wire
from controlplane.clusters import services, trading
from controlplane.clusters.models import TradingAccount, TradingClient
from tests.controlplane.conftest import token_client

URL = "/api/v1/clusters/alpha/commands/"


def place(account: str, client_id: str = "otto", seq: int = 1) -> dict:
    return {"type": "place_order", "client_id": client_id, "client_seq": seq, "account": account,
            "symbol": "ACME", "side": "buy", "qty": 1, "price": 100, }  # fmt: skip


@pytest.fixture
def enforced(cluster, operator):
    """alpha enforces trading permissions; the operator is trading client 'otto' for a1."""
    cluster.trading_checks = True
    cluster.save(update_fields=["trading_checks"])
    a1 = TradingAccount.objects.create(name="a1")
    TradingAccount.objects.create(name="a2")
    otto = TradingClient.objects.create(name="otto", user=operator)
    otto.accounts.add(a1)
    client = redis.Redis.from_url(settings.REDIS_URL)
    key = wire.commands_key(cluster.name)
    client.delete(key, wire.commit_key(cluster.name))
    yield client, key
    client.delete(key, wire.commit_key(cluster.name))


def test_an_account_not_granted_is_refused_with_the_reason_and_nothing_is_sent(enforced, operator_api):
    redis_client, key = enforced
    response = operator_api.post(URL, {"commands": [place("a1"), place("a2", seq=2)], "timeout": 0.3}, format="json")
    assert response.status_code == 403
    assert "not granted account 'a2'" in response.json()["commands"]["1"]
    assert "0" not in response.json()["commands"]
    cancel = {"type": "cancel_order", "client_id": "otto", "client_seq": 3, "account": "a2", "order_id": 1}
    assert operator_api.post(URL, cancel, format="json").status_code == 403
    assert redis_client.xlen(key) == 0


def test_client_ids_outside_the_clients_namespace_are_refused(enforced, operator_api):
    redis_client, key = enforced
    response = operator_api.post(URL, place("a1", client_id="someone-else"), format="json")
    assert response.status_code == 403
    assert "not in the namespace of client otto" in response.json()["commands"]["0"]
    assert redis_client.xlen(key) == 0


def test_a_user_who_is_no_trading_client_is_refused(enforced, viewer):
    viewer.groups.add(Group.objects.get(name="traders"))
    response = token_client(viewer).post(URL, place("a1", client_id="vera"), format="json")
    assert response.status_code == 403
    assert "not an active trading client" in response.json()["detail"]
    assert enforced[0].xlen(enforced[1]) == 0


def test_a_granted_command_is_sent_signed_by_the_control_plane(enforced, operator_api):
    redis_client, key = enforced
    response = operator_api.post(URL, {"commands": [place("a1", client_id="otto.desk")], "timeout": 0.3},
                                 format="json")  # fmt: skip
    assert response.status_code == 504  # no leader runs in this test: sent, not refused
    (_, fields), = redis_client.xrange(key)
    key_id, secret = trading.controlplane_key()
    assert fields[b"k"] == key_id.encode()
    assert trading_verifies(fields, secret)


def trading_verifies(fields: dict, secret: bytes) -> bool:
    from wire import signing

    return signing.verify(secret, "alpha", fields[b"r"].decode(), fields[b"k"].decode(), fields[b"n"],
                          fields[b"c"], fields[b"s"])  # fmt: skip


def test_without_enforcement_nothing_changes(cluster, operator_api):
    assert not cluster.trading_checks
    response = operator_api.post(URL, {"commands": [place("anything", "any")], "timeout": 0.2}, format="json")
    assert response.status_code == 504
    redis.Redis.from_url(settings.REDIS_URL).delete(wire.commands_key("alpha"), wire.commit_key("alpha"))


def test_the_leader_alone_gets_the_client_keys_in_its_heartbeat_answer(enforced, cluster):
    from controlplane.clusters.api.node_views import node_config
    from controlplane.clusters.models import Node

    key = trading.new_key("otto")
    leader = node_config(Node.objects.get(name="alpha-1"))["trading"]
    assert leader["enforced"] is True
    assert leader["keys"][key.key_id] == {"client": "otto", "secret": key.secret, "accounts": ["a1"],
                                          "instruments": False}  # fmt: skip
    assert leader["keys"]["controlplane"]["trusted"] is True
    assert node_config(Node.objects.get(name="alpha-2"))["trading"] is None
    trading.revoke_key(key.key_id)
    assert key.key_id not in node_config(Node.objects.get(name="alpha-1"))["trading"]["keys"]


def test_operators_register_accounts_and_clients_over_the_api(cluster, operator_api, viewer_api, viewer):
    assert operator_api.post("/api/v1/trading-accounts/", {"name": "acct-9"}, format="json").status_code == 201
    created = operator_api.post(
        "/api/v1/trading-clients/", {"name": "vera", "user": viewer.username, "accounts": ["acct-9"]}, format="json"
    )
    assert created.status_code == 201, created.content
    assert created.json()["accounts"] == ["acct-9"]
    assert viewer_api.post("/api/v1/trading-accounts/", {"name": "acct-10"}, format="json").status_code == 403
    assert viewer_api.get("/api/v1/trading-clients/vera/").json()["key_ids"] == []


def test_auditors_read_the_audit_and_change_nothing(cluster, operator):
    auditor = User.objects.create_user("audrey", password="pw-audrey-123", is_staff=True)
    auditor.groups.add(Group.objects.get(name="auditors"))
    services.assign_leader(cluster, "alpha-2", actor=services.Actor("test"), reason="audit me")
    api = token_client(auditor)
    assert api.get("/api/v1/role-changes/?cluster=alpha").json()["count"] == 2
    assert api.get("/api/v1/operator-actions/?cluster=alpha").status_code == 200
    assert api.post("/api/v1/clusters/alpha/pause/", {}, format="json").status_code == 403
    assert api.post(URL, place("a1"), format="json").status_code == 403
    web = APIClient()
    web.force_login(auditor)
    assert web.get("/admin/clusters/rolechange/").status_code == 200
    assert web.get("/admin/clusters/operatoraction/").status_code == 200
    assert web.post("/admin/clusters/cluster/add/", {"name": "x"}).status_code == 403
