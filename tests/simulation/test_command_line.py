"""The command line: runs seeds, exits 1 with a replay command on a violation, and the replay
command reproduces it exactly."""

from __future__ import annotations

import shlex

import pytest

from tests.simulation.__main__ import main
from tests.simulation.rules import Options, Rules
from tests.simulation.runner import run_seeds


def test_safe_seeds_exit_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seeds", "40", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "40 seeds" in out
    assert "seeds/s" in out
    assert "0 safety violations, 0 liveness failures" in out


def test_a_violation_exits_one_and_its_replay_command_reproduces_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seeds", "500", "--legacy", "--stop-on-first", "--quiet"]) == 1
    out = capsys.readouterr().out
    broken = next(line for line in out.splitlines() if " broken at t=" in line)
    replay = next(line for line in out.splitlines() if line.startswith("replay: "))
    words = shlex.split(replay.removeprefix("replay: "))
    assert words[:3] == ["python", "-m", "tests.simulation"]
    assert main(words[3:]) == 1
    replayed = capsys.readouterr().out
    assert broken in replayed.splitlines()
    assert any(line.startswith("t=") for line in replayed.splitlines())  # the trace


def test_several_processes_find_what_one_finds() -> None:
    rules, options = Rules.parse(["election=position"]), Options()
    alone = run_seeds(0, 600, rules, options)
    shared = run_seeds(0, 600, rules, options, jobs=2)
    assert [(f.seed, f.invariant) for f in shared.findings] == [(f.seed, f.invariant) for f in alone.findings]
    assert alone.findings


def test_an_unknown_rule_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--rule", "election=random", "--seeds", "1"]) == 2
    assert "election must be quorum or position" in capsys.readouterr().err
