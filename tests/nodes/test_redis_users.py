"""A real node runs as the Redis user `tec-node` and a client as `tec-client-NAME` on a
private Redis with the ACLs of controlplane/redis_acl.py: the users are enough to trade,
and the client still cannot fake an ack."""

from __future__ import annotations

import pytest
import redis as redis_lib
from django.conf import settings

import wire
from controlplane.clusters import streams
from nodes.engine import AddInstrument, PlaceOrder, Side
from tests.redis_users import make_users
from wire.client import ClusterClient

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_node_and_a_client_trade_under_their_own_redis_users(private_redis, make_cluster):
    urls = make_users(private_redis)
    settings.REDIS_URL = urls["tec-node"]  # the nodes (and this test's control plane) use it
    streams.connection.cache_clear()

    cluster = make_cluster(size=1, write_quorum=0)
    cluster.start_all()
    client_redis = redis_lib.Redis.from_url(urls["tec-client-trader"])
    client = ClusterClient(cluster.name, client_redis, client_id="trader", timeout=15)
    try:
        added = client.submit(AddInstrument(client_id="trader", client_seq=client.next_seq(), symbol="ACME"))
        assert type(added.events[0]).__name__ == "InstrumentAdded"
        placed = client.submit(PlaceOrder(client_id="trader", client_seq=client.next_seq(), account="a1",
                                          symbol="ACME", side=Side.BUY, qty=1, price=100))  # fmt: skip
        assert type(placed.events[0]).__name__ == "OrderAccepted"
        with pytest.raises(redis_lib.exceptions.NoPermissionError):
            client_redis.xadd(wire.acks_key(cluster.name), {"n": f"{cluster.name}-1", "p": 10**6, "t": 1})
    finally:
        client.close()
