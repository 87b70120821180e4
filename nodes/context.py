"""What a role (leader, follower) may use of its node: a typed context, and the node's phase.

A role gets this, not the node, and so do the node's services (retention, the peer
service, an install): its state (engine + archive), its Redis and the adapters to make
(nodes/adapters.py), the cluster as the latest heartbeat answer gives it (`view`, swapped
in whole by the heartbeat thread), a clock, and one stop event, which the node sets when
it stops (the roles' own threads are stopped by `role.stop()`).
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import redis

    from nodes.adapters import Adapters
    from nodes.config import NodeConfig
    from nodes.control import ClusterView
    from nodes.metrics import LoopStats
    from nodes.state import NodeState
    from wire.signing import AckNonces


class Phase(enum.Enum):
    """Where a node is in its life. Only the loop thread moves it; heartbeats report it.

    STARTING   opening or replaying its archive: its report claims nothing (no vote)
    INSTALLING replacing its archive with a peer's snapshot: reported as starting
    LIVE       in a role: leader, follower, or waiting for one
    DRAINING   leader paused for a planned switchover: takes no more commands
    """

    STARTING = "starting"
    INSTALLING = "installing"
    LIVE = "live"
    DRAINING = "draining"

    @property
    def ready(self) -> bool:
        """Its state is rebuilt from its archive: it may report a position and hold a role."""
        return self in (Phase.LIVE, Phase.DRAINING)

    @property
    def reported(self) -> str:
        """What the heartbeat says (the control plane knows starting, live, draining)."""
        return "starting" if not self.ready else self.value


class Clock(Protocol):
    def monotonic(self) -> float: ...
    def time_ns(self) -> int: ...


class SystemClock:
    monotonic = staticmethod(time.monotonic)
    time_ns = staticmethod(time.time_ns)


@dataclass
class RoleContext:
    """The node as its roles and services see it."""

    config: NodeConfig
    state: NodeState
    redis: redis.Redis
    stats: LoopStats
    current_view: Callable[[], ClusterView]  # the latest heartbeat answer
    after_batch: Callable[[], None]  # the loop's bookkeeping after each batch (checkpoint, snapshots)
    stop: threading.Event  # set when the node stops
    ack_nonces: AckNonces  # one per process: a follower's ack nonces increase across terms
    adapters: Adapters  # makes the Redis and archive adapters (nodes/adapters.py)
    phase: Callable[[], Phase]  # where the node is in its life (retention rests while it installs)
    set_status: Callable[[str], None]  # what the node says it is doing while not in a cycle (an install)
    archive_renewed: Callable[[], None]  # after an install renewed the archive: retention forgets what it verified
    clock: Clock = field(default_factory=SystemClock)
    # One per process: a leader's batch-nonce marks, as acknowledged (wire.nonces); its
    # deliveries raise them (one at a time), the heartbeat reports them.
    client_nonces: dict[str, int] = field(default_factory=dict)
    # on_commit(latencies, events): a leader's delivery of committed batches, for the
    # node's metrics (set by nodes.metrics.start when they are served).
    on_commit: Callable[[list[float], int], None] | None = None

    @property
    def view(self) -> ClusterView:
        return self.current_view()

    @property
    def name(self) -> str:
        return self.config.name
