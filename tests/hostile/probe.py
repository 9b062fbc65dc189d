"""Child process: ``inspect_image`` and ``process_image`` on each file named on stdin.

``python tests/hostile/probe.py HOME`` reads one path per line and answers one JSON line per
path: for each call, what it returned (inspect: the size and WCS kind; process: the row's
status and reason) or what it raised (class, whether it is a typed ``SkysiftError`` and its
reason, message, the last frames). Started once per test session by :class:`Probe`, under a
memory cap, so a mutated header that makes the library allocate gigabytes costs a
``MemoryError`` in this process, not the machine; a crash is seen as the pipe closing.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import traceback
from pathlib import Path
from typing import IO, Any

from .runners import CHILD_ENV, cap_memory

TIMEOUT_S = 120.0


def _raised(exc: BaseException) -> dict[str, Any]:
    from skysift.errors import SkysiftError

    return {"raised": type(exc).__name__, "typed": isinstance(exc, SkysiftError),
            "reason": getattr(exc, "reason", None), "message": str(exc)[:300],
            "where": "".join(traceback.format_tb(exc.__traceback__)[-3:])[-1500:]}


def examine(path: str, settings) -> dict[str, Any]:
    from skysift.io.fits import inspect_image
    from skysift.pipeline.image import process_image

    answer: dict[str, Any] = {"path": path}
    try:
        info = inspect_image(path, limits=settings.limits.header_limits())
        answer["inspect"] = {"nx": info.nx, "ny": info.ny, "wcs_kind": info.wcs_kind}
    except BaseException as exc:  # everything, to report it: the test judges
        answer["inspect"] = _raised(exc)
    try:
        row = process_image(path, settings).record.to_row()
        answer["process"] = {"status": row["status"], "reason": row.get("error_reason"),
                             "message": (row.get("error_message") or "")[:300]}
    except BaseException as exc:
        answer["process"] = _raised(exc)
    return answer


def serve(home: str, stdin: IO[str], stdout: IO[str]) -> None:
    from skysift.settings import Settings

    settings = Settings.load(home=home)
    for line in stdin:
        stdout.write(json.dumps(examine(line.strip(), settings)) + "\n")
        stdout.flush()


class Probe:
    """A capped :func:`serve` process; :meth:`ask` sends one path and returns the answer.

    When the process dies (a crash in compiled code, the kernel), :meth:`ask` says so and
    the next call starts a fresh one.
    """

    def __init__(self, home: Path, log: Path) -> None:
        self.home, self.log = home, log
        self.process: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        tests_dir = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [tests_dir, os.environ.get("PYTHONPATH")])),
               **CHILD_ENV}
        with open(self.log, "ab") as log:
            return subprocess.Popen([sys.executable, "-m", "hostile.probe", str(self.home)], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=log, text=True, preexec_fn=cap_memory, env=env)

    def ask(self, path: Path) -> dict[str, Any]:
        if self.process is None or self.process.poll() is not None:
            self.close()
            self.process = self._start()
        process = self.process
        process.stdin.write(f"{path}\n")
        process.stdin.flush()
        ready, _, _ = select.select([process.stdout], [], [], TIMEOUT_S)
        line = process.stdout.readline() if ready else ""
        if line:
            return json.loads(line)
        if ready:  # end of file: the process died
            died = {"died": process.wait()}
        else:
            process.kill()
            died = {"died": "hung", "after_s": TIMEOUT_S}
            process.wait()
        return {"path": str(path), "inspect": died, "process": died}

    def close(self) -> None:
        if self.process is None:
            return
        process, self.process = self.process, None
        with contextlib.suppress(BrokenPipeError):
            process.stdin.close()  # the child's loop ends at end of input
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


if __name__ == "__main__":
    serve(sys.argv[1], sys.stdin, sys.stdout)
