"""A leader's lease: it takes commands only while a renewal it sent recently was answered.

Measured from when the renewal was *sent*, not when its answer arrived: an answer that
took long to come back says the control plane saw us at the sending time at best. The
lease is shorter than the failover timeout, so an isolated leader stops before the
supervisor gives up on it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Lease:
    duration: float
    renewed_at: float | None = None  # monotonic time a successful renewal was sent

    def renewed(self, sent_at: float) -> None:
        """A renewal sent at `sent_at` was answered."""
        if self.renewed_at is None or sent_at > self.renewed_at:
            self.renewed_at = sent_at

    def valid(self, now: float) -> bool:
        return self.renewed_at is not None and now - self.renewed_at < self.duration

    def remaining(self, now: float) -> float:
        if self.renewed_at is None:
            return 0.0
        return max(0.0, self.duration - (now - self.renewed_at))
