"""One seed, one run: the same trace (hash) every time, in this process or another one with a
different string-hash seed (no iteration over sets of strings, no wall clock, no global random)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.simulation.rules import Options, Rules
from tests.simulation.simulator import run_seed

ROOT = Path(__file__).resolve().parents[2]


def test_a_seed_replays_exactly() -> None:
    for seed in (0, 7, 123, 4567):
        first, second = run_seed(seed), run_seed(seed)
        assert first.digest() == second.digest()
        assert first.lines() == second.lines()


def test_a_violation_replays_exactly() -> None:
    rules = Rules.legacy()
    first = next(o for o in (run_seed(s, rules) for s in range(200)) if o.violation is not None)
    second = run_seed(first.seed, rules)
    assert first.violation is not None
    assert second.violation is not None
    assert second.violation.report() == first.violation.report()
    assert second.digest() == first.digest()


def test_different_seeds_differ() -> None:
    assert len({run_seed(seed).digest() for seed in range(20)}) == 20


def test_another_process_with_another_hash_seed_gives_the_same_trace() -> None:
    code = "from tests.simulation.simulator import run_seed; print(run_seed(31, None, None).digest())"
    environment = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=environment, check=True)
    assert result.stdout.strip() == run_seed(31, None, Options()).digest()
