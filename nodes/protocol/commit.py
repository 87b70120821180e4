"""The commit rule (DESIGN §4): archived by the leader and by W current members, in this term.

The leader's commit thread feeds acknowledgements in and asks for the commit position.
An acknowledgement counts only when it comes from a current member of the cluster, in
the leader's own term, and from the archive the member has now: each member's progress
is its *latest* ack (not the highest ever), and an ack from a new archive (a reset
archive id) replaces whatever the old one acknowledged. So a removed node, an ack of
another term, or positions a node no longer holds (archive reset, truncated) never count.

Like Raft (§5.4.2), a leader only counts acks for positions of its own term: the
commit position stays 0 until W members hold the first position this leader wrote.
Entries it inherited become committed with the first of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class MemberProgress:
    position: int
    archive_id: str


@dataclass
class CommitTracker:
    term: int
    term_start: int  # the first position this leader writes in its term
    leader_position: int = 0  # the leader's own archived position
    members: frozenset[str] | None = None  # followers allowed to count; None: not known yet
    progress: dict[str, MemberProgress] = field(default_factory=dict)

    def set_members(self, names: Iterable[str]) -> None:
        """The cluster's current followers (from the control plane); others stop counting."""
        self.members = frozenset(names)
        for name in [n for n in self.progress if n not in self.members]:
            del self.progress[name]

    def record_ack(self, node: str, position: int, term: int, archive_id: str = "") -> bool:
        """Take a follower's acknowledgement; True if it counts."""
        if term != self.term:
            return False  # an ack for another leader's log says nothing about ours
        if self.members is None or node not in self.members:
            return False
        progress = self.progress.get(node)
        if progress is None or progress.archive_id != archive_id:
            self.progress[node] = MemberProgress(position, archive_id)
        else:
            # Acks of one follower arrive in order; the latest says what it holds now.
            progress.position = position
        return True

    def commit_position(self, write_quorum: int) -> int:
        """Highest position held by the leader and at least W member followers, or 0."""
        if write_quorum <= 0:
            position = self.leader_position
        else:
            positions = sorted((p.position for p in self.progress.values()), reverse=True)
            if len(positions) < write_quorum:
                return 0
            position = min(self.leader_position, positions[write_quorum - 1])
        return position if position >= self.term_start else 0

    def acknowledged(self) -> dict[str, int]:
        return {name: p.position for name, p in self.progress.items()}
