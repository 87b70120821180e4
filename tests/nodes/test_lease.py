"""A leader cut off from the control plane stops taking commands once its lease runs out."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from nodes.engine import PlaceOrder
from tests.nodes.conftest import SteadyLoad, archive_entries, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


class TcpProxy:
    """Forwards a local port to the control plane; cut() drops and refuses connections."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open = threading.Event()
        self.open.set()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open.is_set():
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.open.clear()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.sockets.clear()

    def restore(self) -> None:
        self.open.set()

    def close(self) -> None:
        self.cut()
        self.listener.close()


def test_isolated_leader_stops_at_its_lease_and_rejoins_as_follower(make_cluster, supervisor, live_server):
    host, port = live_server.thread.host, live_server.thread.port
    proxy = TcpProxy((host, port))
    try:
        cluster = make_cluster(size=3, write_quorum=1)
        leader, follower, other = list(cluster.secrets)
        cluster.start(leader, CONTROL_PLANE_URL=proxy.url)
        cluster.start(follower)
        cluster.start(other)
        cluster.wait_live(leader, follower, other)
        cluster.add_instrument(cluster.client())
        load = SteadyLoad(cluster).start()
        load.wait_for(100)

        cut_at_ns = time.time_ns()
        proxy.cut()
        wait_until(
            lambda: (row := cluster.cluster).leader is not None and row.leader.name != leader,
            15,
            "another leader to be elected",
        )
        follower = cluster.cluster.leader.name
        load.wait_for(len(load.committed) + 100, timeout=30)
        log_text = cluster.nodes.processes[leader].log_path.read_text()
        assert "lease expired" in log_text
        assert "not taking commands" in log_text

        # Nothing the isolated leader stamped after its lease (1.0 s) plus a margin for the
        # batch in hand is in its archive.
        lease_end_ns = cut_at_ns + int(1.3e9)
        stamped_late = [e for e in archive_entries(cluster.locations[leader]) if e[3] > lease_end_ns and e[1] == 1]
        assert stamped_late == []

        proxy.restore()
        wait_until(lambda: cluster.row(leader).role == "follower" and cluster.is_live(leader), 30, f"{leader} to follow")
        load.stop()
        client = cluster.client()
        result = client.submit(
            PlaceOrder(client_id=client.client_id, client_seq=client.next_seq(), account="z",
                       symbol="ACME", side=1, qty=1, price=1000),
            timeout=20,
        )  # fmt: skip
        last = result.first_position
        cluster.wait_applied(last, leader, follower)
        wait_until(
            lambda: archive_entries(cluster.locations[leader]) == archive_entries(cluster.locations[follower]),
            20, "the old leader's log to equal the new leader's",
        )  # fmt: skip
    finally:
        proxy.close()
