"""One writer at a time per home: an advisory lock on ``{home}/.run.lock``.

Every command that writes a local home (``run``, ``compact``, ``check --repair``,
``completeness``, ``crossmatch``) holds this lock while it writes, so two commands on
one home run one after the other and leave what one sequential run leaves, alerts
included; reading commands (``query``, ``alerts``, ``plot``) never take it (table files
are replaced atomically, so a reader sees the old file or the new one).

The lock is ``fcntl.flock`` on an open file: the kernel releases it when the holder
exits, however it exits (``kill -9`` included), so a crashed run never leaves a stale
lock behind. Worker processes forked by a run inherit the open file, so the home stays
locked until the last of them has exited. The holder writes its pid into the file, so
a command that has to wait can say for whom. ``flock`` is reliable on local file
systems; on a network file system the guarantee is the server's.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["LOCK_NAME", "home_lock", "lock_path", "waiting_message"]

log = logging.getLogger(__name__)

LOCK_NAME = ".run.lock"
#: What a thread already holds: resolved home -> depth, so a holder may take the lock again.
_held = threading.local()


def lock_path(home: str | os.PathLike[str]) -> Path:
    """The lock file of ``home``."""
    return Path(home) / LOCK_NAME


def waiting_message(home: str | os.PathLike[str], pid: str) -> str:
    return f"waiting for another skysift run on {home} (pid {pid or '?'})..."


@contextlib.contextmanager
def home_lock(home: str | os.PathLike[str], *, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the home's write lock for the ``with`` block, waiting for another holder first.

    Parameters
    ----------
    home : path
        The skysift home (created if missing).
    on_wait : callable, optional
        Called once with a one-line message ("waiting for another skysift run on HOME
        (pid N)...") when another process holds the lock; default: a logged warning.

    The lock is re-entrant within one thread (a command that holds it may call a
    library function that takes it again); other threads and processes wait.
    """
    folder = Path(home)
    folder.mkdir(parents=True, exist_ok=True)
    key = str(folder.resolve())
    depth = getattr(_held, "depth", None)
    if depth is None:
        depth = _held.depth = {}
    if depth.get(key):
        depth[key] += 1
        try:
            yield
        finally:
            depth[key] -= 1
        return
    fd = os.open(lock_path(folder), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            message = waiting_message(home, _holder(fd))
            (on_wait or log.warning)(message)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        depth[key] = 1
        try:
            yield
        finally:
            depth.pop(key, None)
    finally:
        os.close(fd)  # releases the lock (forked children that still run keep it until they exit)


def _holder(fd: int) -> str:
    """The pid the current holder wrote into the lock file ('' when not yet written)."""
    with contextlib.suppress(OSError):
        return os.pread(fd, 32, 0).decode(errors="replace").strip()
    return ""
