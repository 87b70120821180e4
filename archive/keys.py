"""Redis key names of a cluster: one namespace per cluster, shared by archive, nodes and control plane."""

from __future__ import annotations

from typing import NamedTuple

PREFIX = "tec"


class ClusterKeys(NamedTuple):
    """The Redis keys of one cluster."""

    cluster: str
    events: str  # the live stream of published batches
    fence: str  # the current term, set by the control plane
    deadletter: str  # entries set aside because they could not be decoded, with a reason
    deadletter_counts: str  # a hash: entries set aside per stream

    def replay(self, node: str) -> str:
        """The replay stream a peer's archive publishes for `node` to catch up from."""
        _check_name("node", node)
        return f"{PREFIX}:{self.cluster}:replay:{node}"

    @property
    def pattern(self) -> str:
        """A SCAN pattern matching every key of the cluster."""
        return f"{PREFIX}:{self.cluster}:*"


def keys(cluster: str) -> ClusterKeys:
    """The keys of `cluster`: tec:{cluster}:events, tec:{cluster}:fence, tec:{cluster}:replay:{node}."""
    _check_name("cluster", cluster)
    return ClusterKeys(
        cluster=cluster,
        events=f"{PREFIX}:{cluster}:events",
        fence=f"{PREFIX}:{cluster}:fence",
        deadletter=f"{PREFIX}:{cluster}:deadletter",
        deadletter_counts=f"{PREFIX}:{cluster}:deadletter:counts",
    )


def _check_name(what: str, name: str) -> None:
    if not name or ":" in name or any(c.isspace() for c in name) or any(c in name for c in "*?[]"):
        raise ValueError(
            f"{what} name {name!r} must be non-empty, without ':', spaces or glob characters"
        )
