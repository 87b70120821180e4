"""Over Redis, a cluster that enforces trading permissions takes only signed batches from
registered clients, for their granted accounts: the leader refuses the rest before the log,
says why, sets them aside and counts them. A real leader process."""

from __future__ import annotations

import time

import pytest

import wire
from archive.deadletter import dead_letter_counts
from controlplane.clusters import services, switchover, trading
from controlplane.clusters.models import ClientNonce, Cluster, TradingAccount, TradingClient
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
from wire.keys import keys

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


def test_an_api_batch_overtaken_by_another_workers_later_nonce_is_sent_again(make_cluster):
    """The control plane's processes share one key. A batch whose nonce another process
    overtook (its later nonce reached the stream first) is refused as a replay before it
    runs; the API sends it again with a new nonce and it commits once."""
    from controlplane.clusters import commands

    cluster = make_cluster(size=1, write_quorum=0)
    Cluster.objects.filter(name=cluster.name).update(trading_checks=True)
    (leader,) = cluster.start_all()
    other_worker = ClusterClient(cluster.name, cluster.redis, client_id="ops", timeout=10,
                                 signing_key=trading.controlplane_key())  # fmt: skip
    cluster.clients.append(other_worker)
    other_worker.signer._nonce = time.time_ns() + 10**9  # its clock a second ahead of ours
    other_worker.submit(AddInstrument(client_id="ops", client_seq=other_worker.next_seq(), symbol="ACME"))

    order = PlaceOrder(client_id="desk", client_seq=1, account="a1", symbol="ACME", side=Side.BUY, qty=1, price=100)
    submitted = commands.submit(cluster.name, [order], timeout=10)

    assert submitted.results[0].status == wire.RESULT_COMMITTED
    assert dead_letter_counts(cluster.redis, cluster.name).get("commands.replayed", 0) >= 1
    kinds = [entry[2] for entry in archive_entries(cluster.locations[leader])]
    assert kinds.count(OrderAccepted.KIND) == 1  # sent up to four times, run once
    assert CommandDuplicate.KIND not in kinds


def refused_after_revocation(signed: ClusterClient) -> bool:
    try:
        signed.submit(place(signed, "a1"))
    except CommandRefused as refused:
        return "unknown or revoked key" in str(refused)
    return False


class Replayable:
    """A three-node cluster that enforces trading permissions, a trader's signed client, and
    one signed entry as an eavesdropper would capture it, to add again as it was."""

    def __init__(self, make_cluster) -> None:
        cluster = self.cluster = make_cluster(size=3, write_quorum=1)
        Cluster.objects.filter(name=cluster.name).update(trading_checks=True)
        trader = TradingClient.objects.create(name="trader")
        trader.accounts.add(TradingAccount.objects.create(name="a1"))
        self.key = trading.new_key(trader)
        cluster.start_all()
        self.operations = ClusterClient(cluster.name, cluster.redis, client_id="ops", timeout=10,
                                        signing_key=trading.controlplane_key())  # fmt: skip
        self.signed = ClusterClient(cluster.name, cluster.redis, client_id="trader", timeout=10,
                                    signing_key=(self.key.key_id, self.key.secret))  # fmt: skip
        cluster.clients += [self.operations, self.signed]
        self.add_instrument("ACME")
        payload = wire.encode([encode_command(place(self.signed, "a1"))])
        self.fields = {"r": self.signed.reply_key, "c": payload, **self.signed.signer.fields(self.signed.reply_key, payload)}
        self.nonce = int(self.fields["n"])

    def send(self) -> list:
        entry = self.cluster.redis.xadd(wire.commands_key(self.cluster.name), self.fields).decode()
        self.signed._outstanding[entry] = 1
        return self.signed.wait(entry, timeout=20)

    def leader(self) -> str:
        return wait_until(lambda: (leader := self.cluster.cluster.leader) and leader.name, 20, "a leader")

    def add_instrument(self, symbol: str) -> None:
        ops = self.operations
        added = ops.submit(AddInstrument(client_id="ops", client_seq=ops.next_seq(), symbol=symbol), timeout=20)
        assert added.status == wire.RESULT_COMMITTED

    def wait_leading(self, old: str) -> str:
        """The new leader's name, once it takes commands. With another key than the
        trader's: a fresh batch of the trader's own would raise its mark in the new
        leader's memory, and the replay would be refused for that reason alone."""
        wait_until(lambda: (leader := self.cluster.cluster.leader) is not None and leader.name != old, 20,
                   "a new leader")  # fmt: skip
        self.add_instrument("OTHER")
        return self.leader()

    def replay_is_refused(self, leader: str) -> None:
        """Refused as a replay, set aside and counted; the leader's log does not grow."""
        location = self.cluster.locations[leader]
        logged = archive_entries(location)
        before = dead_letter_counts(self.cluster.redis, self.cluster.name).get("commands.replayed", 0)
        with pytest.raises(CommandRefused, match="replayed batch"):
            self.send()
        wait_until(lambda: dead_letter_counts(self.cluster.redis, self.cluster.name).get("commands.replayed", 0) > before,
                   10, "the replay to be counted")  # fmt: skip
        assert archive_entries(location) == logged
        kinds = [entry[2] for entry in logged]
        assert kinds.count(OrderAccepted.KIND) == 1  # the captured order, placed once
        assert CommandDuplicate.KIND not in kinds


def test_a_signed_batch_replayed_after_a_failover_is_refused_and_counted(make_cluster, supervisor):
    """The fenced delivery that acknowledged the batch raised its key's mark in Redis in
    the same step (wire.nonces): the next leader, elected after the fence moved, starts
    from it, so a batch captured before the failover is refused, not answered as a
    duplicate, and the new leader's log and book do not change."""
    replayable = Replayable(make_cluster)
    (original,) = replayable.send()
    assert original.status == wire.RESULT_COMMITTED
    old = replayable.leader()  # the supervisor may have elected before the nodes were up
    replayable.cluster.nodes.kill(old)
    new = replayable.wait_leading(old)
    replayable.replay_is_refused(new)


def test_the_control_plane_hands_the_marks_over_when_redis_lost_them(make_cluster):
    """The leader reports its acknowledged marks in its heartbeat and the control plane
    keeps them: with the Redis copy gone (as after a Redis restart), the next leader of a
    switchover gets them in its heartbeat answer and refuses the replay all the same."""
    replayable = Replayable(make_cluster)
    (original,) = replayable.send()
    assert original.status == wire.RESULT_COMMITTED
    cluster = replayable.cluster
    wait_until(lambda: ClientNonce.objects.filter(cluster__name=cluster.name, key_id=replayable.key.key_id,
                                                  nonce__gte=replayable.nonce).exists(),
               10, "the leader to report the batch's mark")  # fmt: skip
    cluster.redis.delete(keys(cluster.name).nonces)
    old = replayable.leader()
    target = next(name for name in cluster.secrets if name != old)
    switchover.change_leader(cluster.name, target, actor=services.Actor("test"), reason="test", timeout=20)
    new = replayable.wait_leading(old)
    assert new == target
    replayable.replay_is_refused(new)
