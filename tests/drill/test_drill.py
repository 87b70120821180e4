"""The short drill of `make test`: every kind of fault a few times on real processes, then the checker.

It runs `manage.py drill` as an operator would (its own PostgreSQL, Redis, control plane,
supervisor and three node workers in a temp dir) and asserts that the checker found no
violation: 0 acknowledged commands lost, 0 applied twice, logs agreeing, equal digests,
every fault recovered. About two minutes on the 2-core development machine. The seed is
fixed so that a failure can be replayed (DRILL_SEED=... to try another).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

SHORT_DRILL = [
    "--commands", "2500",
    "--kills", "3", "--pauses", "2", "--redis-restarts", "1", "--pg-restarts", "2",
    "--poison", "4", "--clock-steps", "1", "--cuts", "2", "--switchovers", "1", "--quorum-changes", "1",
]  # fmt: skip


def test_short_drill_finds_no_violation(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    seed = os.environ.get("DRILL_SEED", "7")
    completed = subprocess.run(
        [sys.executable, "manage.py", "drill", *SHORT_DRILL, "--seed", seed,
         "--report", str(report), "--workdir", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, text=True, timeout=840,
    )  # fmt: skip
    output = f"{completed.stdout[-6000:]}\n{completed.stderr[-3000:]}"
    assert report.exists(), f"the drill wrote no report (exit {completed.returncode}):\n{output}"
    data = json.loads(report.read_text())
    assert data["counts"] == {}, f"the checker found violations:\n{output}"
    assert completed.returncode == 0, output
    assert data["commands"]["committed"] >= 2500, output
    injected = [fault for fault in data["faults"] if not fault.get("skipped")]
    assert len(injected) >= 15, f"only {len(injected)} faults were injected:\n{output}"
    assert data["recovery"]["all faults"]["count"] == len(injected), output
