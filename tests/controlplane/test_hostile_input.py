"""Input an attacker would try gets a 4xx with a JSON reason, never a 500, and changes nothing.

Each class of input is sent to every endpoint that takes a body (commands, cluster PATCH,
node registration, leader, switchover, heartbeat) and to the URL parts (order lookup,
names, filters): the classes are refused by one parser and one middleware, so a new
endpoint gets the same treatment.
"""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from controlplane.clusters import services
from controlplane.clusters.models import Cluster, Node

TOO_BIG = 2**64 + 1  # past the unsigned 64-bit range too
PLACE = {"type": "place_order", "client_id": "c1", "client_seq": 1, "account": "alice",
         "symbol": "DEMO", "side": "buy", "qty": 10, "price": 100}  # fmt: skip
REPORT = {"status": "live", "archived_position": 7, "applied_position": 7, "term": 1}

# (method, url, a valid body whose fields the attacks below replace)
BODIES = {
    "commands": ("post", "/api/v1/clusters/alpha/commands/", PLACE),
    "cluster_patch": ("patch", "/api/v1/clusters/alpha/", {"replica_count": 2, "heartbeat_interval": 0.5}),
    "register": ("post", "/api/v1/nodes/", {"name": "alpha-9", "cluster": "alpha",
                                            "archive_location": "postgresql://h/db"}),
    "leader": ("post", "/api/v1/clusters/alpha/leader/", {"node": "alpha-2", "expected_term": 1}),
    "switchover": ("post", "/api/v1/clusters/alpha/switchover/",
                   {"node": "alpha-2", "expected_leader": "alpha-1", "expected_term": 1}),
    "heartbeat": ("post", "/api/v1/nodes/alpha-9/heartbeat/", REPORT),
}  # fmt: skip


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def with_every_value(body: dict, raw_value: str) -> str:
    """The body as JSON with every scalar value replaced by `raw_value` (raw JSON text)."""
    marker = "\u2603MARK\u2603"
    text = json.dumps({key: marker for key in body})
    return text.replace(json.dumps(marker), raw_value)


ATTACKS = {
    "deep_nesting": lambda body: nested(100_000),
    "deep_nesting_in_a_field": lambda body: with_every_value(body, nested(5_000)),
    "integer_past_64_bits": lambda body: with_every_value(body, str(TOO_BIG)),
    "negative_integer_past_64_bits": lambda body: with_every_value(body, str(-TOO_BIG)),
    "a_100000_digit_integer": lambda body: with_every_value(body, "9" * 100_000),
    "float_overflow": lambda body: with_every_value(body, "1e400"),
    "nan": lambda body: with_every_value(body, "NaN"),
    "lone_surrogate": lambda body: with_every_value(body, '"a\\ud800b"'),
    "lone_surrogate_in_a_key": lambda body: json.dumps({**body, "x": 1}).replace('"x"', '"\\udfff"'),
    "nul": lambda body: with_every_value(body, '"a\\u0000b"'),
    "not_utf8": lambda body: json.dumps(body).encode() + b'\xff\xfe',
}


@pytest.fixture
def node_secret(cluster) -> str:
    return services.register_node(name="alpha-9", cluster=cluster, archive_location="postgresql://h/db9")[1]


def send(api: APIClient, method: str, url: str, body) -> object:
    return getattr(api, method)(url, body, content_type="application/json")


def state() -> list:
    return [
        list(Cluster.objects.values_list("name", "term", "replica_count", "heartbeat_interval")),
        list(Node.objects.order_by("name").values_list("name", "status", "archived_position")),
    ]


@pytest.mark.parametrize("attack", sorted(ATTACKS))
@pytest.mark.parametrize("endpoint", sorted(BODIES))
def test_hostile_bodies_get_a_400_and_change_nothing(cluster, operator_api, node_secret, endpoint, attack):
    method, url, body = BODIES[endpoint]
    if endpoint == "heartbeat":
        operator_api = APIClient()
        operator_api.credentials(HTTP_AUTHORIZATION=f"Node {node_secret}")
    before = state()
    response = send(operator_api, method, url, ATTACKS[attack](body))
    assert response.status_code == 400, response.content[:300]
    assert response["Content-Type"] == "application/json"
    assert "detail" in response.json()
    assert state() == before


@pytest.mark.parametrize("field", ["client_id", "account"])
def test_nul_in_a_command_is_refused_by_the_engine_too(field):
    """The engine's own check, for commands that do not come through the API's parser."""
    from nodes.engine import CommandError, command_from_dict

    with pytest.raises(CommandError) as refused:
        command_from_dict({**PLACE, field: "alice\x00"})
    assert field in refused.value.errors


def test_a_5_mb_body_gets_a_json_413(cluster, operator_api):
    before = state()
    body = json.dumps({"commands": [PLACE] * 40_000})  # about 5 MB
    assert len(body) > 5_000_000
    response = send(operator_api, "post", "/api/v1/clusters/alpha/commands/", body)
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert "larger than" in response.json()["detail"]
    assert state() == before


@pytest.mark.parametrize(
    "url",
    [
        f"/api/v1/clusters/alpha/orders/{TOO_BIG}/",
        f"/api/v1/clusters/alpha/orders/{2**63}/",
        f"/api/v1/role-changes/{TOO_BIG}/",
        f"/api/v1/operator-actions/{TOO_BIG}/",
        "/api/v1/clusters/alpha%00/",
        "/api/v1/clusters/" + "a" * 300 + "/",
        "/api/v1/clusters/a%ED%A0%80/",
        "/api/v1/nodes/alpha-1%00/",
        "/api/v1/nodes/?cluster=alpha%00",
        "/api/v1/role-changes/?cluster=%00",
        "/api/v1/clusters/alpha/book/?symbol=DE%00MO",
        "/api/v1/clusters/alpha/events/?limit=" + str(TOO_BIG),
        "/admin/clusters/node/?q=%00",
    ],
)
def test_hostile_urls_get_a_4xx(cluster, operator_api, admin_client, url):
    api = admin_client if url.startswith("/admin/") else operator_api
    response = api.get(url)
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])


def test_hostile_heartbeat_url(node_secret):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Node {node_secret}")
    response = client.post("/api/v1/nodes/alpha-9%00/heartbeat/", REPORT, format="json")
    assert response.status_code in (400, 404)


@pytest.mark.parametrize("endpoint", ["/api/v1/nodes/", "/api/v1/role-changes/"])
def test_a_page_past_what_the_database_can_count_is_empty_not_a_500(cluster, operator_api, endpoint):
    """PostgreSQL's LIMIT and OFFSET are bigints; the fuzzer found a 500 in a limit past it."""
    whole = operator_api.get(endpoint).json()
    assert whole["count"] > 0
    huge_limit = operator_api.get(f"{endpoint}?limit={TOO_BIG}")
    assert huge_limit.status_code == 200, huge_limit.content[:300]
    assert huge_limit.json()["results"] == whole["results"]  # cut to the largest page: all of them
    for query in (f"offset={TOO_BIG}", f"limit={TOO_BIG}&offset={2**63 - 1}"):
        response = operator_api.get(f"{endpoint}?{query}")
        assert response.status_code == 200, (query, response.content[:300])
        assert response.json()["results"] == []
        assert response.json()["count"] == whole["count"]


def test_a_page_is_at_most_a_thousand_long(cluster, operator_api):
    for index in range(1_001):
        services.register_node(name=f"alpha-p{index}", cluster=cluster, archive_location=f"postgresql://h/p{index}")
    body = operator_api.get("/api/v1/nodes/?limit=5000").json()
    assert body["count"] > 1_000
    assert len(body["results"]) == 1_000
    assert "offset=1000" in body["next"]
