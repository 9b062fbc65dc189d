"""Process pools that survive their workers: a call that kills its process fails alone.

A worker killed by the kernel (out of memory, a crash in compiled code) breaks a
:class:`~concurrent.futures.ProcessPoolExecutor` and every call not yet finished with it.
:func:`run_surviving` finds the calls that were running, runs each again alone, and goes on
with the rest in a new pool: one bad image never stops a survey.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import tempfile
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from skysift.errors import InternalError, WorkerDied
from skysift.heap import frozen_for_fork

__all__ = ["RUNNING_PREFIX", "Alone", "DoneCallback", "how_it_ended", "run_surviving"]

log = logging.getLogger(__name__)

#: ``on_done(index, result, error)``: one call of :func:`run_surviving` finished; it may return more calls to run.
DoneCallback = Callable[[int, Any, BaseException | None], list[tuple] | None]
#: Prefix of the workers' scratch folders (a run cleans up those a killed run left).
RUNNING_PREFIX = ".running-"


def run_surviving(fn: Callable[..., Any], calls: list[tuple], workers: int, on_done: DoneCallback, *,
                  initializer: Callable[..., None] | None = None, initargs: tuple = (),
                  scratch: str | os.PathLike[str] | None = None) -> None:
    """``fn(*calls[i])`` for every ``i`` in ``workers`` processes, surviving the death of a worker.

    ``on_done(i, result, error)`` runs in this process as each call finishes, with the
    exception the call raised as ``error`` (then ``result`` is None). It may return more
    calls (a list of argument tuples, None for none): they get the next indices and start
    before the calls still waiting, as soon as a worker is free, so work that one result
    makes possible need not wait for the rest (a survey prepares an image's alerts as soon as
    every earlier image of its sky is measured). Calls start in order otherwise, at most
    one waiting per pool beyond those running.

    A worker killed by the kernel (out of memory, a crash in compiled code) breaks the whole
    pool and every call not yet finished with it: the calls that were running are each tried
    again alone in a fresh process, so the one that kills its process again ends with
    :class:`~skysift.errors.WorkerDied` and the innocent ones succeed; the others go on in a
    new pool. ``KeyboardInterrupt`` starts nothing new. The workers' notes live in a temporary
    folder in ``scratch`` (default: the system's).
    """
    calls = list(calls)
    waiting = deque(range(len(calls)))

    def finished(i: int, result: Any, error: BaseException | None) -> None:
        more = on_done(i, result, error) or []
        calls.extend(more)
        waiting.extendleft(reversed(range(len(calls) - len(more), len(calls))))

    if scratch is not None:
        Path(scratch).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=RUNNING_PREFIX if scratch is not None else "skysift-running-",
                                     dir=scratch) as running:
        while waiting:
            broken = _pool_round(fn, calls, waiting, workers, finished, running, initializer, initargs)
            suspects = _running_when_broken(running, broken) or broken[:1]
            if broken:
                log.warning("a worker process died; trying the %d image(s) it may have been measuring alone", len(suspects))
            waiting.extendleft(reversed([i for i in broken if i not in suspects]))  # they had started: first again
            for i in suspects:
                _run_alone(fn, calls[i], i, finished, initializer, initargs)


def _pool_round(fn, calls: list[tuple], waiting: deque[int], workers: int, on_done: DoneCallback, running: str,
                initializer, initargs) -> list[int]:
    """Run the ``waiting`` calls (taken from its left, ``on_done`` may add to it) in one pool, at
    most one waiting in the pool beyond the ``workers`` running; returns the calls lost when the
    pool broke (in index order). A call the broken pool refused is back at the left of ``waiting``."""
    broken: list[int] = []
    with frozen_for_fork(), ProcessPoolExecutor(max_workers=workers, initializer=initializer, initargs=initargs) as pool:
        submitted: dict[Future, int] = {}
        broken_at_submit = False
        try:
            while True:
                while waiting and not (broken or broken_at_submit) and len(submitted) <= workers:
                    i = waiting.popleft()
                    try:
                        submitted[pool.submit(_tracked, running, i, fn, *calls[i])] = i
                    except BrokenProcessPool:  # a worker died since the last wait: this call never started
                        waiting.appendleft(i)
                        broken_at_submit = True
                        break
                if not submitted:
                    break
                finished, _ = wait(submitted, return_when=FIRST_COMPLETED)
                for future in sorted(finished, key=submitted.get):
                    i = submitted.pop(future)
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        broken.append(i)
                        continue
                    except Exception as exc:
                        on_done(i, None, exc)
                        continue
                    on_done(i, result, None)
        except BaseException:  # KeyboardInterrupt (also from ``on_done``): start nothing new
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return sorted(broken)


def _tracked(running: str, index: int, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a pool worker, leaving ``running/<pid>`` = index while it runs,
    so that after a pool breaks the parent knows which calls were running."""
    marker = Path(running) / str(os.getpid())
    marker.write_text(str(index))
    try:
        return fn(*args)
    finally:
        marker.unlink(missing_ok=True)


def _running_when_broken(running: str, broken: list[int]) -> list[int]:
    """Indices of the calls that were running when the pool broke (their markers remain); clears them."""
    found = set()
    for marker in Path(running).iterdir():
        with contextlib.suppress(OSError, ValueError):  # a marker being written as the pool broke
            found.add(int(marker.read_text()))
        marker.unlink(missing_ok=True)
    return [i for i in broken if i in found]


class Alone:
    """``fn(*args)`` started now in a process of its own (forked, as the pool's workers are), so
    that this process goes on meanwhile, and that if the call dies, it dies alone and says how.

    :meth:`outcome` waits for it: ``(result, None)``, or ``(None, error)`` with the exception it
    raised (one that cannot be pickled comes as an :class:`~skysift.errors.InternalError`), or a
    :class:`~skysift.errors.WorkerDied` when its process died without answering (``died`` makes its
    message from the exit code).
    """

    def __init__(self, fn: Callable[..., Any], args: tuple = (), initializer: Callable[..., None] | None = None,
                 initargs: tuple = (), *, died: Callable[[int | None], str] | None = None) -> None:
        self._died = died or _death_message  # the WorkerDied message, from the process's exit code
        context = multiprocessing.get_context()
        self._receive, send = context.Pipe(duplex=False)
        self._process = context.Process(target=_alone_child, args=(send, fn, args, initializer, initargs))
        with frozen_for_fork():  # as the pool's workers are (see _pool_round)
            self._process.start()
        send.close()

    def outcome(self) -> tuple[Any, BaseException | None]:
        try:
            answer = self._receive.recv()  # EOFError when the child dies before it answers
        except EOFError:
            answer = None
        finally:
            self._receive.close()
            self._process.join()
        if answer is None:
            return None, WorkerDied(self._died(self._process.exitcode))
        return (answer[1], None) if answer[0] == "ok" else (None, answer[1])


def _run_alone(fn: Callable[..., Any], args: tuple, index: int, on_done: DoneCallback,
               initializer: Callable[..., None] | None, initargs: tuple) -> None:
    """``fn(*args)`` in a process of its own (:class:`Alone`), waited for; ``on_done`` gets its outcome."""
    on_done(index, *Alone(fn, args, initializer, initargs).outcome())


def _alone_child(send, fn: Callable[..., Any], args: tuple, initializer, initargs: tuple) -> None:
    try:
        if initializer is not None:
            initializer(*initargs)
        outcome = ("ok", fn(*args))
    except Exception as exc:
        outcome = ("error", exc)
    try:
        send.send(outcome)
    except Exception as exc:  # an exception that cannot be pickled: send what it was
        send.send(("error", InternalError.from_exception(exc)))
    send.close()


def how_it_ended(exitcode: int | None) -> str:
    """How a process that did not answer ended: 'was killed by SIGKILL (...)', 'exited with status 1'."""
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        cause = " (the kernel's out-of-memory killer sends it)" if -exitcode == signal.SIGKILL else ""
        return f"was killed by {name}{cause}"
    return f"exited with status {exitcode}"


def _death_message(exitcode: int | None) -> str:
    return (f"the process measuring this image {how_it_ended(exitcode)}, in the pool and again alone: "
            "give it more memory (--max-memory, fewer workers with -j) or check the file")
