"""The topology (issue 16): many hosts on one machine, a partition and a Sentinel failover.

Both tests run the commands as an operator would, as separate processes: `manage.py
topology --demo` starts the demo cluster with a network namespace per host and runs the
README's demo commands from the clients' host; `manage.py drill --topology netns` runs a
short drill with one partition (seed 4: the leader cut from Redis for 3.7 s, past its
failover timeout) and one Redis primary kill (Sentinel promotes the replica), then
checks the history and the archives.
Each tears down every process and namespace it made; the tests check that none is left.
They need root, ip and nft (CI has them: `make test-topology`, also part of `make test`),
and skip saying why otherwise. About a minute together on the 2-core machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from controlplane.topology.netns import missing_tools

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e, pytest.mark.topology, pytest.mark.timeout(900)]


@pytest.fixture(autouse=True)
def needs_namespaces():
    problem = missing_tools()
    if problem:
        pytest.skip(f"the topology needs network namespaces: {problem}")
    before = set(_namespaces())
    yield
    left = [name for name in _namespaces() if name not in before]
    assert not left, f"namespaces left behind: {left}"


def _namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def test_the_readme_demo_commands_work_from_the_clients_host(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "manage.py", "topology", "--demo", "--workdir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    output = f"{completed.stdout[-6000:]}\n{completed.stderr[-3000:]}"
    assert completed.returncode == 0, output
    assert '"type": "trade"' in completed.stdout, output  # the sell crossed the buy
    for host in ("controlplane", "demo-node-1", "demo-node-3", "redis-1", "redis-2", "sentinel-3", "clients"):
        assert f"  {host} " in completed.stdout, output
    assert "| demo-node-3 | follower | live" in completed.stdout, output


def test_a_partition_and_a_sentinel_failover_lose_nothing(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    completed = subprocess.run(
        [sys.executable, "manage.py", "drill", "--topology", "netns", "--commands", "1500",
         "--partitions", "1", "--partition-links", "node-redis", "--redis-failovers", "1",
         "--seed", os.environ.get("DRILL_SEED", "4"), "--report", str(report), "--workdir", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, text=True, timeout=840,
    )  # fmt: skip
    output = f"{completed.stdout[-6000:]}\n{completed.stderr[-3000:]}"
    assert report.exists(), f"the drill wrote no report (exit {completed.returncode}):\n{output}"
    data = json.loads(report.read_text())
    assert data["counts"] == {}, f"the checker found violations:\n{output}"
    assert completed.returncode == 0, output
    injected = sorted(fault["kind"] for fault in data["faults"] if not fault.get("skipped"))
    assert injected == ["partition", "redis-failover"], output
    assert data["recovery"]["all faults"]["count"] == 2, output
