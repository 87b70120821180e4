"""Redis key names of a cluster: one namespace per cluster, shared by archive, nodes and control plane.

Every key of a cluster carries the cluster's name as a Redis Cluster hash tag,
`tec:{NAME}:...`: only the part between the first braces decides the slot, so all of a
cluster's keys share one slot and every script (a fenced publish, a delivery to many
reply lists) touches keys of that slot only. Clusters spread over the slots: one
cluster, one slot, as in Kafka one partition lives on one broker.
"""

from __future__ import annotations

from typing import NamedTuple

PREFIX = "tec"


class ClusterKeys(NamedTuple):
    """The Redis keys of one cluster."""

    cluster: str
    events: str  # the live stream of published batches (one per term: events:TERM)
    fence: str  # the current term, set by the control plane
    deadletter: str  # entries set aside because they could not be decoded, with a reason
    deadletter_counts: str  # a hash: entries set aside per stream
    nonces: str  # a hash: per client key, the highest batch nonce acknowledged (wire.nonces)

    @property
    def base(self) -> str:
        """The common start of every key of the cluster, with its hash tag: tec:{NAME}."""
        return tagged(self.cluster)

    def replay(self, node: str) -> str:
        """The replay stream a peer's archive publishes for `node` to catch up from."""
        _check_name("node", node)
        return f"{self.base}:replay:{node}"

    @property
    def pattern(self) -> str:
        """A SCAN pattern matching every key of the cluster (braces are literal in a glob)."""
        return f"{self.base}:*"


def tagged(cluster: str) -> str:
    """tec:{cluster}: the hash-tagged prefix of the cluster's keys."""
    return f"{PREFIX}:{{{cluster}}}"


def keys(cluster: str) -> ClusterKeys:
    """The keys of `cluster`: tec:{NAME}:events, tec:{NAME}:fence, tec:{NAME}:replay:NODE, ..."""
    _check_name("cluster", cluster)
    base = tagged(cluster)
    return ClusterKeys(
        cluster=cluster,
        events=f"{base}:events",
        fence=f"{base}:fence",
        deadletter=f"{base}:deadletter",
        deadletter_counts=f"{base}:deadletter:counts",
        nonces=f"{base}:nonces",
    )


def _check_name(what: str, name: str) -> None:
    if (
        not name
        or ":" in name
        or any(c.isspace() for c in name)
        or any(c in name for c in "*?[]{}")
    ):
        raise ValueError(
            f"{what} name {name!r} must be non-empty, without ':', spaces, braces or glob characters"
        )
