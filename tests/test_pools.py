"""Pools that survive their workers, and the calls one result makes possible (issue 15: a survey
prepares an image's alerts in the measuring pool as soon as the earlier images are measured)."""

from __future__ import annotations

import os
import signal
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skysift.errors import WorkerDied
from skysift.parallel.pools import run_surviving


def _echo(value):
    return value


def _kill_after(value, fatal, seconds):
    """``value``, unless it is ``fatal``: then this process dies after ``seconds``."""
    if value == fatal:
        time.sleep(seconds)
        os.kill(os.getpid(), signal.SIGKILL)
    return value


def _kill_on(value, fatal):
    """``value``, unless it is ``fatal``: then this process dies as the kernel's OOM killer ends it."""
    if value == fatal:
        os.kill(os.getpid(), signal.SIGKILL)
    return value


def _stamped(value):
    """``value`` and when this call started (the system-wide monotonic clock: comparable between processes)."""
    return value, time.monotonic_ns()


def test_calls_that_a_result_returns_run_before_the_waiting_ones_with_the_next_indices():
    seen = {}

    def done(i, result, error):
        value, started = result
        seen[i] = (value, started, error)
        return [(f"after {value}",)] if value == "a" else None

    run_surviving(_stamped, [(name,) for name in "abcdef"], 1, done)

    # one worker: one call running and one waiting in the pool when 'a' returns its follow-up
    # (results that arrive together are handled in index order, so the order is the start times')
    assert [value for value, _, _ in sorted(seen.values(), key=lambda v: v[1])] == ["a", "b", "after a", "c", "d", "e", "f"]
    assert seen[6][0] == "after a" and all(error is None for _, _, error in seen.values())


def test_a_worker_killed_by_the_kernel_loses_neither_the_calls_it_made_possible_nor_the_waiting_ones():
    seen = {}

    def done(i, result, error):
        seen[i] = (result, type(error).__name__ if error else None)
        return [("follow-up", "never")] if result in {"a", "c"} else None

    run_surviving(_kill_on, [(name, "d") for name in "abcdefg"], 2, done)

    assert sorted(str(result) for result, _ in seen.values()) == ["None", "a", "b", "c", "e", "f", "follow-up", "follow-up", "g"]
    [(died, reason)] = [(i, reason) for i, (result, reason) in seen.items() if result is None]
    assert died == 3 and reason == WorkerDied.__name__
    assert sorted(seen) == list(range(9))  # every call once, the follow-ups with indices 7 and 8


def test_a_worker_that_dies_while_a_result_is_being_handled_fails_only_its_call():
    """The pool breaks while ``on_done`` is busy with another call's result, before the next call
    is submitted: that call is not lost and the run does not stop (submitting to a broken pool raises)."""
    seen = {}

    def done(i, result, error):
        seen[i] = (result, type(error).__name__ if error else None)
        if result == "slow to record":
            time.sleep(1.0)  # a failure row written, a progress bar drawn: the other worker dies meanwhile

    run_surviving(_kill_after, [(name, "dies", 0.3) for name in ("slow to record", "dies", "c", "d", "e", "f")], 2, done)

    assert seen == {0: ("slow to record", None), 1: (None, WorkerDied.__name__), 2: ("c", None), 3: ("d", None),
                    4: ("e", None), 5: ("f", None)}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=st.lists(st.integers(0, 3), min_size=1, max_size=6), workers=st.integers(1, 3))
def test_every_call_and_every_call_it_makes_possible_runs_exactly_once(first, workers):
    """Each call ``n`` returns ``n - 1`` follow-ups of ``n - 1`` (a tree of calls made by results)."""
    counts = {}

    def done(i, result, error):
        assert error is None
        counts[i] = counts.get(i, 0) + 1
        return [(result - 1,)] * (result - 1) if result > 1 else None

    run_surviving(_echo, [(n,) for n in first], workers, done)

    def size(n):  # the calls a call of n makes, itself included
        return 1 + (n - 1) * size(n - 1) if n > 1 else 1

    assert sorted(counts) == list(range(sum(size(n) for n in first)))
    assert set(counts.values()) == {1}
