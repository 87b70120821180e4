"""Loaded (as `sitecustomize`) only by node workers the drill runs under Debian's faketime.

libfaketime 0.9.10 breaks Python 3.11's `time.sleep`: Python sleeps with
clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME), which libfaketime turns into EINVAL
when the monotonic clock is not faked (FAKETIME_DONT_FAKE_MONOTONIC=1, what a wall-clock
step needs) and into a sleep as long as the offset when it is. Either way the node would
fail for a reason no real clock step causes. This sleeps with select() instead, a
relative timeout libfaketime leaves alone; the wall clock stays as faketime sets it.
"""

import select
import time


def _sleep(seconds: float) -> None:
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    select.select([], [], [], seconds)


time.sleep = _sleep
