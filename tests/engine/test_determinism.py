"""The state hashes are equal across processes (str hashing is salted per process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import sys
sys.path.insert(0, sys.argv[1])
from bench.engine import generate
from nodes.engine import Engine
engine = Engine()
for command in generate(3000, 7):
    engine.process(command)
print(engine.running_hash, engine.digest())
"""


def run_with_seed(seed: str) -> str:
    env = dict(os.environ, PYTHONHASHSEED=seed)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(ROOT)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.strip()


def test_hashes_do_not_depend_on_the_process_hash_seed():
    first = run_with_seed("1")
    assert first == run_with_seed("2")
    running_hash, digest = first.split()
    assert 0 <= int(running_hash) < 2**64
    assert len(digest) == 64
