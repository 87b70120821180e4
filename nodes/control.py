"""The node's view of the control plane: heartbeats over the operators' HTTP API."""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from wire.signing import ReplicationKeys


class ControlPlaneError(Exception):
    """The control plane did not answer, or answered with an error."""


class NodeRefused(ControlPlaneError):
    """The control plane refuses this node (unknown, wrong secret, removed): do not run."""


@dataclass(frozen=True)
class ClusterView:
    """The answer to a heartbeat: this node's role and its cluster's configuration."""

    node: str
    cluster: str
    role: str
    term: int
    leader: str | None
    replica_count: int
    write_quorum: int  # W: follower acks a commit needs
    heartbeat_interval: float
    failover_timeout: float
    lease: float
    archive_location: str
    archive_id: str = ""  # the archive id on file: a leader leads only with that archive
    resyncing: bool = False  # a new empty replica: may follow, never lead
    report_epoch: int = 0  # echoed in our next report (nodes.protocol.identity.covers_reset)
    members: tuple[str, ...] = ()  # the current followers; only their acks count
    switchover_to: str | None = None  # set: a planned switchover is in flight
    keep_events: int = 0  # retention's minimum window (nodes.protocol.retention)
    retention_floor: int | None = None  # the lowest position a live member holds; None: delete nothing
    # The leader's only: trading permissions and client keys (wire.admission), or None.
    trading: dict[str, Any] | None = field(default=None, compare=False)
    # Every node's: the cluster's replication keys (acks and published entries are signed).
    replication: dict[str, Any] | None = field(default=None, compare=False)

    @cached_property
    def replication_keys(self) -> ReplicationKeys | None:
        """Built once per heartbeat answer, read by the loops every cycle."""
        return ReplicationKeys.from_view(self.replication)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClusterView:
        known = {name for name in cls.__dataclass_fields__}
        values = {key: value for key, value in data.items() if key in known}
        values["members"] = tuple(values.get("members", ()))
        return cls(**values)


class ControlPlane(Protocol):
    """Contract: heartbeat() stores the report and returns the node's current view.

    Raises NodeRefused when the node must not run (not registered, wrong secret,
    removed) and ControlPlaneError when the control plane cannot be reached; the node
    keeps its last view then, and a leader's lease runs out.
    """

    def heartbeat(self, report: dict[str, Any]) -> ClusterView: ...


class HttpControlPlane:
    def __init__(
        self, base_url: str, node_name: str, secret: str, timeout: float = 2.0, secret_file: str = ""
    ) -> None:
        self.url = f"{base_url}/api/v1/nodes/{node_name}/heartbeat/"
        self.secret = secret
        self.timeout = timeout
        self.secret_file = secret_file

    def current_secret(self) -> str:
        """The secret file's content now (an operator rotated it: no restart), else the last."""
        if self.secret_file:
            # On OSError keep the last secret: the file may be being replaced.
            with contextlib.suppress(OSError):
                self.secret = Path(self.secret_file).read_text().strip() or self.secret
        return self.secret

    def heartbeat(self, report: dict[str, Any]) -> ClusterView:
        request = urllib.request.Request(
            self.url,
            data=json.dumps(report).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Node {self.current_secret()}"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return ClusterView.from_json(json.loads(response.read()))
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:300]
            if error.code in (401, 403, 404):
                raise NodeRefused(f"control plane refused the node ({error.code}): {detail}") from None
            raise ControlPlaneError(f"heartbeat failed ({error.code}): {detail}") from None
        except (OSError, ValueError) as error:
            raise ControlPlaneError(f"control plane unreachable at {self.url}: {error}") from None
