"""What the simulated cluster obeys: the safety rules of DESIGN §4, or the old behaviour each replaced.

`Rules()` is the protocol as designed. Each flag restores one old, unsafe behaviour, so a
test can show that the simulator finds the loss that rule prevents; `Rules.legacy()` turns
the four old behaviours on together.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class Rules:
    # "quorum": election.decide (last term, position; N - W + 1 fresh reports).
    # "position": the old supervisor: highest archived position among followers heard since
    # the leader went silent, no quorum, no fence_seen; a restarted node reports "live"
    # while it is still replaying.
    election: str = "quorum"
    # False: a report counts whatever fence it saw, and one report is enough.
    report_freshness: bool = True
    # False: deliveries and acks skip the fence check (a deposed leader keeps delivering,
    # followers keep acknowledging the old term until their next heartbeat answer).
    fenced_delivery: bool = True
    # False: no archive ids: a node restarted with an empty archive votes, leads and acks
    # as if it still held what it had (a leader restarted empty leads its term from 0).
    archive_identity: bool = True
    # Which quorum history an election must respect (see controlplane.py, "Election window").
    # "commit": every W and follower set in force since the leader last confirmed a commit
    #           under the current configuration (safe).
    # "term":   only those of the term that ended, as the brief and DESIGN §4 word it; unsafe
    #           when W is raised or a follower removed and the next leader commits nothing.
    quorum_window: str = "commit"
    # True: the control plane applies a node's reports in the order they were sent (each
    # carries its process start and sequence number) and drops an older one that arrives
    # late. False: it keeps whichever arrived last; a late, older report then looks like a
    # position that went back (a spurious reset that can stall elections for good).
    report_order: bool = True
    # False: a node that truncated its log at rejoin says so in its next report (to what
    # position), and the control plane lowers the position on file before judging, so the
    # truncation of an uncommitted tail does not make it a new empty replica. True: as
    # identity.judge alone does, any position that went back is a reset; the node stops
    # voting until a leader gives it a resync target, which can stall an election for good.
    truncation_resyncs: bool = False

    @classmethod
    def legacy(cls) -> Rules:
        """The four old behaviours together."""
        return cls(election="position", report_freshness=False, fenced_delivery=False, archive_identity=False)

    @classmethod
    def parse(cls, items: list[str], base: Rules | None = None) -> Rules:
        """Rules from `name=value` strings, e.g. ["election=position", "fenced_delivery=false"]."""
        rules = base or cls()
        kinds = {f.name: f.type for f in fields(cls)}
        for item in items:
            name, sep, raw = item.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in kinds:
                raise ValueError(f"unknown rule {item!r}; rules are: {', '.join(kinds)}")
            value: object = raw.strip()
            if kinds[name] in (bool, "bool"):
                lowered = raw.strip().lower()
                if lowered not in ("true", "false", "on", "off", "1", "0"):
                    raise ValueError(f"rule {name} takes true or false, not {raw!r}")
                value = lowered in ("true", "on", "1")
            rules = replace(rules, **{name: value})
        rules.validate()
        return rules

    def validate(self) -> None:
        if self.election not in ("quorum", "position"):
            raise ValueError(f"election must be quorum or position, not {self.election!r}")
        if self.quorum_window not in ("commit", "term"):
            raise ValueError(f"quorum_window must be commit or term, not {self.quorum_window!r}")

    def unsafe(self) -> list[str]:
        """The old behaviours switched on, as `name=value` (empty: all safe)."""
        safe = Rules()
        return [f"{f.name}={_show(getattr(self, f.name))}" for f in fields(self) if getattr(self, f.name) != getattr(safe, f.name)]

    def describe(self) -> str:
        old = self.unsafe()
        return "safe rules" if not old else "OLD rules: " + ", ".join(old)


def _show(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


@dataclass(frozen=True)
class Timing:
    """Durations in simulated ticks (think 10 ms). Ratios matter, not values: the lease is
    shorter than the failover timeout (DESIGN §4 "Lease"), heartbeats come several times
    within it (one lost report must not cost the leader its term), and a node cycle is
    shorter than a heartbeat."""

    node_cycle: int = 10
    heartbeat: int = 15
    heartbeat_timeout: int = 20  # an unanswered heartbeat is given up and the next one sent
    failover: int = 75  # five heartbeats, as the defaults (0.5 s, 3 s) give six
    lease: int = 50
    supervisor: int = 25
    supervisor_step: int = 4  # from reading the database to its compare-and-set
    client_timeout: int = 120
    replay: tuple[int, int] = (10, 40)  # start-up replay before a node is live
    retry: int = 30  # a rejoin or catch-up request unanswered this long is sent again
    idle_ack: int = 30  # a follower with nothing new repeats its ack this often
    switchover_timeout: int = 150


@dataclass(frozen=True)
class Options:
    """One run's shape; the seed draws everything left as None."""

    steps: int = 200  # events in the fault phase; the heal phase comes after
    heal_steps: int = 2500  # at most this many more events to converge
    replicas: int | None = None  # N followers (N + 1 nodes)
    quorum: int | None = None  # W
    scenario: str = "mixed"  # see faults.SCENARIOS
    liveness: bool = True  # heal and check convergence at the end
    paranoid: bool = False  # also recheck every invariant from scratch after every step
    timing: Timing = Timing()
