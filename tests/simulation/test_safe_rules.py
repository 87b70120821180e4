"""With every safety rule of DESIGN §4 on, no seed breaks an invariant and every healed cluster
converges. A few thousand seeds here; `python -m tests.simulation --seeds 1000000 --jobs 2`
is the acceptance run."""

from __future__ import annotations

import pytest

from tests.simulation.rules import Options, Rules
from tests.simulation.runner import Summary, run_seeds

# (scenario, first seed, seeds): the default mix, then each biased schedule on seeds of its own.
CASES = [
    ("mixed", 0, 15000),
    ("failover", 1_000_000, 1500),
    ("deposed", 2_000_000, 1500),
    ("archive-loss", 3_000_000, 1500),
    ("quorum", 4_000_000, 1500),
    ("rejoin", 7_000_000, 1500),
]


def failures(summary: Summary) -> str:
    return "\n\n".join(finding.report for finding in summary.findings[:3])


@pytest.mark.parametrize(("scenario", "start", "count"), CASES)
def test_no_seed_breaks_an_invariant(scenario: str, start: int, count: int) -> None:
    summary = run_seeds(start, count, Rules(), Options(scenario=scenario))
    assert summary.seeds == count
    assert not summary.findings, failures(summary)


def test_rechecking_everything_after_every_step_agrees() -> None:
    """The from-scratch checks (Options.paranoid) find nothing the incremental ones missed."""
    summary = run_seeds(5_000_000, 200, Rules(), Options(paranoid=True))
    assert not summary.findings, failures(summary)


def test_a_fixed_cluster_shape_holds_too() -> None:
    """Four followers with the strictest write quorum: every node must ack."""
    summary = run_seeds(6_000_000, 200, Rules(), Options(replicas=4, quorum=4))
    assert not summary.findings, failures(summary)
