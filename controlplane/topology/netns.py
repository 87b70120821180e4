"""Many machines on one: a network namespace per host, a bridge between them, nft to cut links.

Each *host* of a topology is a Linux network namespace with one address on a private
/24, wired by a veth pair to a bridge that lives in a namespace of its own (the
"switch"): nothing is added to the machine's own network, whose services (PostgreSQL on
127.0.0.1:5432, Redis on :6379) keep serving others. A process runs on a host as
`ip netns exec NAME ...` (`Network.on(host)`).

Partitions are nft rules inside one host's namespace: packets to and from the other
side are dropped (not rejected), as a broken switch port or a firewall drops them, so
TCP connections hang and retransmit, and resume when the link heals. Every namespace
carries the network's unique prefix; `destroy()` deletes exactly those (which takes
their veths along). Needs root, `ip` (iproute2) and `nft` (Debian's nftables).
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field

CUT_TABLE = "tec_partition"  # the nft table the cuts live in, in each host's namespace
CLONE_NEWNET = 0x40000000


class NetworkError(RuntimeError):
    """A namespace, link or rule could not be made; the message has the command's error."""


def missing_tools() -> str | None:
    """None when namespaces can be made here; else what is missing."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (apt-get install -y {package})"
    return None


def run(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise NetworkError(f"{' '.join(argv)}: {(result.stderr or result.stdout).strip()}")
    return result.stdout


@dataclass
class Cut:
    """One partition: host `a` drops everything to and from `b_addresses` (on `port`, if given)."""

    a: str
    b_addresses: tuple[str, ...]
    port: int | None = None
    label: str = ""


@dataclass
class Network:
    """The namespaces of one topology: `add(host)` gives it an address on the bridge."""

    subnet: str = "10.77.0"  # the /24; private to the switch namespace, never routed
    prefix: str = field(default_factory=lambda: f"tec{uuid.uuid4().hex[:5]}")
    addresses: dict[str, str] = field(default_factory=dict)  # host -> address
    namespaces: list[str] = field(default_factory=list)  # every namespace we made, to delete
    cuts: list[Cut] = field(default_factory=list)

    @property
    def switch(self) -> str:
        return f"{self.prefix}-switch"

    def namespace(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    def on(self, host: str) -> list[str]:
        """The command prefix that runs a process on `host`."""
        return ["ip", "netns", "exec", self.namespace(host)]

    def _add_namespace(self, name: str) -> None:
        run("ip", "netns", "add", name)
        self.namespaces.append(name)
        run("ip", "-n", name, "link", "set", "lo", "up")

    def create(self) -> None:
        if self.namespaces:
            return
        self._add_namespace(self.switch)
        atexit.register(self.destroy)  # whatever happens, no namespace outlives us
        run("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.switch, "link", "set", "br0", "up")

    def add(self, host: str) -> str:
        """A namespace for `host`, wired to the bridge; its address."""
        self.create()
        index = len(self.addresses) + 10
        address = f"{self.subnet}.{index}"
        namespace = self.namespace(host)
        self._add_namespace(namespace)
        port = f"p{index}"  # the bridge's side, named inside the switch namespace only
        run("ip", "-n", self.switch, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", namespace)
        run("ip", "-n", self.switch, "link", "set", port, "master", "br0", "up")
        run("ip", "-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
        run("ip", "-n", namespace, "link", "set", "eth0", "up")
        self.addresses[host] = address
        return address

    # -- partitions ----------------------------------------------------------------------

    def cut(self, a: str, b_addresses: tuple[str, ...], port: int | None = None, label: str = "") -> Cut:
        """Drop every packet between host `a` and `b_addresses` (both ways), or only those of
        TCP `port` on `a`'s own address (a host cut from a server it runs itself). In force
        when this returns: one nft transaction."""
        lines = []
        if not any(cut.a == a for cut in self.cuts):
            lines += [f"add table inet {CUT_TABLE}",
                      f"add chain inet {CUT_TABLE} out {{ type filter hook output priority 0; policy accept; }}",
                      f"add chain inet {CUT_TABLE} in {{ type filter hook input priority 0; policy accept; }}"]  # fmt: skip
        for address in b_addresses:
            if port is None:
                rules = [("out", f"ip daddr {address} drop"), ("in", f"ip saddr {address} drop")]
            else:  # the host's own server, reached over its own address
                rules = [("out", f"ip saddr {address} ip daddr {address} tcp dport {port} drop"),
                         ("out", f"ip saddr {address} ip daddr {address} tcp sport {port} drop")]  # fmt: skip
            lines += [f"add rule inet {CUT_TABLE} {chain} {rule}" for chain, rule in rules]
        self._nft(a, "\n".join(lines) + "\n")
        cut = Cut(a, tuple(b_addresses), port, label)
        self.cuts.append(cut)
        return cut

    def _nft(self, host: str, script: str) -> None:
        result = subprocess.run(["ip", "netns", "exec", self.namespace(host), "nft", "-f", "-"],
                                input=script, capture_output=True, text=True, timeout=30)  # fmt: skip
        if result.returncode != 0:
            raise NetworkError(f"nft on {host}: {result.stderr.strip()}\n{script}")

    def heal(self, cut: Cut | None = None) -> None:
        """Remove one cut (and every other cut on the same host), or all of them."""
        for host in sorted({c.a for c in self.cuts if cut is None or c.a == cut.a}):
            run("ip", "netns", "exec", self.namespace(host), "nft", "delete", "table", "inet", CUT_TABLE)
            self.cuts = [c for c in self.cuts if c.a != host]

    # -- the end -------------------------------------------------------------------------

    def destroy(self) -> list[str]:
        """Delete every namespace this network made (their veths go with them); the errors."""
        errors = []
        for name in reversed(self.namespaces):
            try:
                run("ip", "netns", "del", name)
            except NetworkError as error:
                errors.append(str(error))
        self.namespaces.clear()
        self.cuts.clear()
        return errors


def enter(namespace: str) -> None:
    """Move the calling thread into `namespace`'s network (setns(2)); threads it starts
    afterwards are born there. Call from the main thread before any other starts."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise NetworkError(f"setns({namespace}): {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)


def leave(original_fd: int) -> None:
    """Back to the namespace open as `original_fd` (see `current()`)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(original_fd, CLONE_NEWNET) != 0:
        raise NetworkError(f"setns back: {os.strerror(ctypes.get_errno())}")


def current() -> int:
    """A handle on the calling thread's network namespace (to come back with `leave`)."""
    return os.open("/proc/thread-self/ns/net", os.O_RDONLY)
