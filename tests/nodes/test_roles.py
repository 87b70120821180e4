"""The node's phase, and how the leader's threads report trouble to its loop (pure, no services)."""

from __future__ import annotations

import threading

import pytest

from nodes.committer import SteppedDown, Trouble
from nodes.context import Phase


@pytest.mark.parametrize(
    ("phase", "ready", "reported"),
    [
        (Phase.STARTING, False, "starting"),
        (Phase.INSTALLING, False, "starting"),  # the control plane knows no "installing": no vote either way
        (Phase.LIVE, True, "live"),
        (Phase.DRAINING, True, "draining"),
    ],
)
def test_a_phase_says_whether_the_node_may_claim_a_position(phase, ready, reported):
    assert (phase.ready, phase.reported) == (ready, reported)


def test_the_first_failure_reported_is_the_one_the_loop_raises():
    trouble = Trouble()
    trouble.check()  # nothing reported: no exception
    first, second = SteppedDown("delivery refused"), OSError("archive gone")
    threads = [threading.Thread(target=trouble.fail, args=(error,)) for error in (first, second)]
    threads[0].start()
    threads[0].join()
    threads[1].start()
    threads[1].join()
    with pytest.raises(SteppedDown, match="delivery refused"):
        trouble.check()
    with pytest.raises(SteppedDown):  # still the first, every time the loop looks
        trouble.check()
