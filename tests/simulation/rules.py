"""What the simulated cluster obeys: the safety rules of DESIGN §4, or the old behaviour each replaced.

`Rules()` is the protocol as designed, with the control plane's own mechanisms for the three
rules this simulator found wanting (quorum_window, report_order, truncation). Each other
value restores an older behaviour: one the brief specified, so that a test can show that
the simulator finds the loss that rule prevents, or this simulator's first fix of it, kept
for comparison. `Rules.legacy()` turns the brief's four old behaviours on together.
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
    # "settle": the control plane's rule: the lowest W (term_write_quorum) and the removed
    #           followers (removed_in_term) since the window last settled, which happens on
    #           the current leader's first report of its term that its commit position
    #           reached a position of its own (Report.settled_quorum) (safe; the default).
    # "commit": every W and follower set in force since the leader last confirmed a commit
    #           under the current configuration (this simulator's first fix, safe).
    # "term":   only those of the term that ended, as the brief and DESIGN §4 word it; unsafe
    #           when W is raised or a follower removed and the next leader commits nothing.
    quorum_window: str = "settle"
    # Which of a node's reports the control plane stores (each report carries its process's
    # boot id and a sequence number).
    # "boot":    a first version of the control plane's rule: a report with the boot id on
    #            file and a sequence at or below the one on file is ignored; boot ids were
    #            random, so a late report of a previous process was stored (seed 5190 stalls).
    # "start":   the control plane's rule: (boot of the archive, sequence) ordered, kept in
    #            the archive, so an older report is dropped also across restarts.
    # "arrival": whichever arrived last is kept; a late, older report then looks like a
    #            position that went back (a spurious reset that can stall elections for good).
    report_order: str = "start"
    # How a position that went back at a rejoin truncation is told from a reset archive.
    # "count":  the control plane's rule: each archive keeps a count of rejoin truncations
    #           (persistent, reset only with the archive), reports carry it, and
    #           identity.judge takes a position that went back with a higher count than on
    #           file as a rejoin, not a reset.
    # "report": this simulator's first fix: the next report says to what position a rejoin
    #           truncated the log, and the control plane lowers the position on file first.
    # "resync": as identity.judge did alone: any position that went back is a reset; the node
    #           stops voting until a leader gives it a resync target, which can stall an
    #           election for good.
    truncation: str = "count"
    # What a leader's settled_quorum says (quorum_window="settle").
    # "used": a first version: the lowest W it computed its commit position with since that
    #         position first reached its own term. A W it already holds but has not used
    #         yet is missed; see test_settle_race.py.
    # "held": the leader's rule (nodes/committer.py settled_quorum): also every W it has read
    #         and the W of the view it holds when it builds the report.
    settle_report: str = "held"

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
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                choices = ", ".join(allowed[:-1]) + " or " + allowed[-1]
                raise ValueError(f"{name} must be {choices}, not {value!r}")

    def unsafe(self) -> list[str]:
        """The rules that differ from the default, as `name=value` (empty: the default rules)."""
        safe = Rules()
        return [f"{f.name}={_show(getattr(self, f.name))}" for f in fields(self) if getattr(self, f.name) != getattr(safe, f.name)]

    def describe(self) -> str:
        changed = self.unsafe()
        return "default rules" if not changed else "rules changed: " + ", ".join(changed)


_CHOICES = {
    "election": ("quorum", "position"),
    "quorum_window": ("settle", "commit", "term"),
    "report_order": ("boot", "start", "arrival"),
    "truncation": ("count", "report", "resync"),
    "settle_report": ("used", "held"),
}


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
