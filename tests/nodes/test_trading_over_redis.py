"""Over Redis, a cluster that enforces trading permissions takes only signed batches from
registered clients, for their granted accounts: the leader refuses the rest before the log,
says why, sets them aside and counts them. A real leader process."""

from __future__ import annotations

import pytest

import wire
from archive.deadletter import dead_letter_counts
from controlplane.clusters import trading
from controlplane.clusters.models import Cluster, TradingAccount, TradingClient
from nodes.engine import (
    AddInstrument,
    CancelOrder,
    CommandDuplicate,
    OrderAccepted,
    PlaceOrder,
    Side,
    encode_command,
)
from tests.nodes.conftest import archive_entries, wait_until
from wire.client import ClusterClient, CommandRefused

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def place(client: ClusterClient, account: str, client_id: str | None = None) -> PlaceOrder:
    return PlaceOrder(client_id=client_id or client.client_id, client_seq=client.next_seq(), account=account,
                      symbol="ACME", side=Side.BUY, qty=1, price=100)  # fmt: skip


def test_only_signed_batches_for_granted_accounts_reach_the_log(make_cluster):
    cluster = make_cluster(size=1, write_quorum=0)
    Cluster.objects.filter(name=cluster.name).update(trading_checks=True)
    a1 = TradingAccount.objects.create(name="a1")
    TradingAccount.objects.create(name="a2")
    trader = TradingClient.objects.create(name="trader")
    trader.accounts.add(a1)
    key = trading.new_key(trader)
    (leader,) = cluster.start_all()
    location = cluster.locations[leader]

    def client(signing_key=None, client_id: str = "trader") -> ClusterClient:
        made = ClusterClient(cluster.name, cluster.redis, client_id=client_id, timeout=10, signing_key=signing_key)
        cluster.clients.append(made)
        return made

    operations = client(trading.controlplane_key(), client_id="ops")  # trusted: may add instruments
    operations.submit(AddInstrument(client_id="ops", client_seq=operations.next_seq(), symbol="ACME"))
    signed = client((key.key_id, key.secret))
    accepted = signed.submit(place(signed, "a1"))
    assert type(accepted.events[0]).__name__ == "OrderAccepted"
    # A replay: a signed entry added twice, as it was (an eavesdropper with write access).
    payload = wire.encode([encode_command(place(signed, "a1"))])
    fields = {"r": signed.reply_key, "c": payload, **signed.signer.fields(signed.reply_key, payload)}
    first = cluster.redis.xadd(wire.commands_key(cluster.name), fields)
    cluster.redis.xadd(wire.commands_key(cluster.name), fields)
    signed._outstanding[first.decode()] = 1
    assert signed.wait(first.decode())[0].status == wire.RESULT_COMMITTED
    wait_until(lambda: dead_letter_counts(cluster.redis, cluster.name).get("commands.replayed") == 1, 20,
               "the replayed batch to be set aside")  # fmt: skip
    logged = len(archive_entries(location))

    with pytest.raises(CommandRefused, match="not granted account 'a2'"):
        signed.submit(place(signed, "a2"))
    with pytest.raises(CommandRefused, match="not granted account 'a2'"):
        signed.submit(CancelOrder(client_id="trader", client_seq=signed.next_seq(), account="a2", order_id=1))
    with pytest.raises(CommandRefused, match="not in the namespace of client trader"):
        signed.submit(place(signed, "a1", client_id="mallory"))
    unsigned = client()
    with pytest.raises(CommandRefused, match="unsigned batch"):
        unsigned.submit(place(unsigned, "a1"))
    forged = client((key.key_id, "00" * 32))
    with pytest.raises(CommandRefused, match="bad signature"):
        forged.submit(place(forged, "a1"))

    assert len(archive_entries(location)) == logged  # nothing refused reached the log

    trading.revoke_key(key.key_id)
    wait_until(lambda: refused_after_revocation(signed), 20, "the leader to refuse the revoked key")
    counts = dead_letter_counts(cluster.redis, cluster.name)
    assert counts["commands.unsigned"] == 1
    assert counts["commands.bad_signature"] == 1
    assert counts["commands.replayed"] == 1
    assert counts["commands.unknown_key"] >= 1


def refused_after_revocation(signed: ClusterClient) -> bool:
    try:
        signed.submit(place(signed, "a1"))
    except CommandRefused as refused:
        return "unknown or revoked key" in str(refused)
    return False


def test_a_signed_batch_replayed_after_a_leader_change_changes_no_book(make_cluster, supervisor):
    """The leader keeps the batch nonces it has seen in memory: a new leader takes a signed
    batch replayed from before its term, but the engine's idempotency (client id, sequence)
    answers each command with its original result, so no order is placed twice; the log
    gets one CommandDuplicate event per command. From then on that leader refuses it as a
    replay (counted)."""
    cluster = make_cluster(size=3, write_quorum=1)
    Cluster.objects.filter(name=cluster.name).update(trading_checks=True)
    trader = TradingClient.objects.create(name="trader")
    trader.accounts.add(TradingAccount.objects.create(name="a1"))
    key = trading.new_key(trader)
    cluster.start_all()
    operations = ClusterClient(cluster.name, cluster.redis, client_id="ops", timeout=10,
                               signing_key=trading.controlplane_key())  # fmt: skip
    signed = ClusterClient(cluster.name, cluster.redis, client_id="trader", timeout=10,
                           signing_key=(key.key_id, key.secret))  # fmt: skip
    cluster.clients += [operations, signed]
    operations.submit(AddInstrument(client_id="ops", client_seq=operations.next_seq(), symbol="ACME"))
    payload = wire.encode([encode_command(place(signed, "a1"))])
    fields = {"r": signed.reply_key, "c": payload, **signed.signer.fields(signed.reply_key, payload)}

    def send() -> list:
        entry = cluster.redis.xadd(wire.commands_key(cluster.name), fields).decode()
        signed._outstanding[entry] = 1
        return signed.wait(entry, timeout=20)

    (original,) = send()
    assert original.status == wire.RESULT_COMMITTED
    old = cluster.cluster.leader.name  # the supervisor may have elected before the nodes were up
    cluster.nodes.kill(old)
    wait_until(lambda: (leader := cluster.cluster.leader) is not None and leader.name != old, 20, "a new leader")
    (again,) = send()  # a new leader has not seen the nonce: the engine has seen the command
    assert again.status == wire.RESULT_DUPLICATE
    assert again.first_position == original.first_position
    leader = cluster.cluster.leader.name
    kinds = [entry[2] for entry in archive_entries(cluster.locations[leader])]
    assert kinds.count(OrderAccepted.KIND) == 1  # the order was placed once
    assert kinds[-1] == CommandDuplicate.KIND
    with pytest.raises(CommandRefused, match="replayed batch"):  # now it remembers the nonce
        send()
    wait_until(lambda: dead_letter_counts(cluster.redis, cluster.name).get("commands.replayed", 0) >= 1, 10,
               "the second replay to be counted")  # fmt: skip
