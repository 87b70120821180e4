"""Client commands from the control plane (API and `manage.py submit`) to a cluster's leader."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import wire
from controlplane.clusters import streams
from nodes.engine import CommandError, command_from_dict, event_to_dict
from wire.admission import REPLAYED_BATCH
from wire.client import (
    ClusterClient,
    CommandRefused,
    CommandResult,
    CommitTimeout,
    NotEnoughReplicas,
)

STATUS_NAMES = {wire.RESULT_COMMITTED: "committed", wire.RESULT_DUPLICATE: "duplicate"}


@dataclass
class Submission:
    results: list[CommandResult]

    @property
    def all_duplicates(self) -> bool:
        return all(result.duplicate for result in self.results)

    def as_json(self) -> list[dict[str, Any]]:
        return [
            {
                "status": STATUS_NAMES.get(result.status, "error"),
                "first_position": result.first_position,
                "events": [event_to_dict(event) for event in result.events],
            }
            for result in self.results
        ]


RESEND_AFTER_S = 3.0
# The web workers (and manage.py submit) sign with the control plane's one key, whose
# nonces must reach the stream in order: when two submit in the same instant, the batch
# whose nonce is lower but arrives second is refused as a replay before any of it runs.
# It is sent again, with a new nonce (the same client_seq: it runs once in any case).
REPLAY_RETRIES = 3
REPLAY_BACKOFF_S = 0.1  # before the first retry; x4 before each next one (2.1 s in all)


def parse_commands(items: list[Any]) -> tuple[list, dict[str, dict[str, str]]]:
    """Validate every command before any reaches the engine; errors keyed by index."""
    commands, errors = [], {}
    for index, item in enumerate(items):
        try:
            commands.append(command_from_dict(item))
        except CommandError as error:
            errors[str(index)] = error.errors
    return commands, errors


def submit(cluster: str, commands: list, timeout: float) -> Submission:
    """Send the commands as one batch and wait for their committed results.

    Raises CommitTimeout after `timeout`: NotEnoughReplicas (a CommitTimeout) when fewer
    followers acknowledge than the write quorum, a plain CommitTimeout otherwise.
    """
    from controlplane.clusters import trading

    client = ClusterClient(
        cluster, streams.connection(), client_id="controlplane", timeout=timeout,
        signing_key=trading.controlplane_key(),
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    try:
        for attempt in range(REPLAY_RETRIES + 1):
            try:
                # Re-sent while unanswered: a batch lost with a Redis primary that failed over
                # runs once all the same (the same client_seq, DESIGN §4 "Idempotent commands").
                remaining = max(0.1, deadline - time.monotonic())
                return Submission(client.submit_many(commands, remaining, resend_after=RESEND_AFTER_S))
            except CommandRefused as refused:
                if not str(refused).startswith(REPLAYED_BATCH) or attempt == REPLAY_RETRIES:
                    raise
                time.sleep(min(REPLAY_BACKOFF_S * 4**attempt, max(0.0, deadline - time.monotonic())))
        raise AssertionError("unreachable: the last attempt returns or raises")
    finally:
        client.close()


__all__ = ["CommandRefused", "CommitTimeout", "NotEnoughReplicas", "Submission", "parse_commands", "submit"]
