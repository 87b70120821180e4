"""The leader's cycle pacer (nodes.leader.CyclePacer), on a fake clock."""

from __future__ import annotations

import pytest

from base.env import ConfigError
from nodes.config import NodeConfig
from nodes.leader import CyclePacer


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


def flowing(clock: FakeClock, pacer: CyclePacer) -> None:
    """Two cycles 1 ms apart: commands keep coming."""
    pacer.began(full=False)
    clock.now += 0.001
    pacer.began(full=False)


def test_a_command_that_finds_the_leader_idle_is_read_at_once():
    clock = FakeClock()
    pacer = CyclePacer(0.003, clock)
    assert pacer.delay() == 0.0
    pacer.began(full=False)  # the first cycle in a while: nothing says more is coming
    assert pacer.delay() == 0.0
    flowing(clock, pacer)
    clock.now += 0.010  # the last cycle began long enough ago
    assert pacer.delay() == 0.0


def test_while_commands_keep_coming_the_next_read_waits_out_the_minimum_cycle():
    clock = FakeClock()
    pacer = CyclePacer(0.003, clock)
    flowing(clock, pacer)
    clock.now += 0.001
    assert abs(pacer.delay() - 0.002) < 1e-9
    clock.now += 0.002
    assert pacer.delay() == 0.0
    pacer.began(full=False)  # 3 ms after the last: still a flow, still paced
    assert abs(pacer.delay() - 0.003) < 1e-9


def test_sparse_traffic_is_never_held_back():
    clock = FakeClock()
    pacer = CyclePacer(0.003, clock)
    for _ in range(5):  # a cycle every 7 ms: more than twice the minimum apart
        pacer.began(full=False)
        assert pacer.delay() == 0.0
        clock.now += 0.007


def test_a_backlog_is_read_without_waiting():
    clock = FakeClock()
    pacer = CyclePacer(0.003, clock)
    flowing(clock, pacer)
    clock.now += 0.001
    pacer.began(full=True)  # the read took all it asked for: more is waiting
    assert pacer.delay() == 0.0
    clock.now += 0.001
    pacer.began(full=False)
    assert pacer.delay() > 0.0


def test_a_minimum_of_zero_never_waits():
    clock = FakeClock()
    pacer = CyclePacer(0.0, clock)
    pacer.began(full=False)
    pacer.began(full=False)
    assert pacer.delay() == 0.0


def test_the_minimum_cycle_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("NODE_SECRET", "s")
    monkeypatch.setenv("NODE_MIN_CYCLE_MS", "5")
    assert NodeConfig.from_env("n1").min_cycle_s == 0.005
    monkeypatch.setenv("NODE_MIN_CYCLE_MS", "0")
    assert NodeConfig.from_env("n1").min_cycle_s == 0.0
    for bad, says in (("500", "at most 50"), ("-1", "below the minimum"), ("soon", "not a number")):
        monkeypatch.setenv("NODE_MIN_CYCLE_MS", bad)
        with pytest.raises(ConfigError, match=says):
            NodeConfig.from_env("n1")
