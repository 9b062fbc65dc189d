"""Memory the C allocator holds free, given back to the system (glibc's ``malloc_trim``); the
interpreter's objects kept out of forked children's collections (:func:`frozen_for_fork`); and
NumPy's arrays on ordinary pages (:func:`numpy_without_huge_pages`).

glibc keeps what a process frees inside its heap for later allocations; SEP's extraction,
scipy's filters and NumPy's temporaries of a few MiB each leave tens of MiB there. That
memory stays resident, and a forked strip worker (:mod:`skysift.parallel.strips`) starts
with every resident page of its parent counted as its own. Trimming before the fork and
in the worker between its steps keeps that free memory out of every process's peak (the
memory target of issue 15: 300 MiB per worker for a 4096^2 frame). Where the C library
has no ``malloc_trim`` (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

__all__ = ["NUMPY_HUGE_PAGES_VARIABLE", "frozen_for_fork", "numpy_without_huge_pages", "release_free_heap"]


@cache
def _malloc_trim():
    try:
        return getattr(ctypes.CDLL(None), "malloc_trim", None)
    except OSError:  # no C library to load symbols from
        return None


def release_free_heap() -> bool:
    """Give the allocator's free memory back to the system (a few ms); False when this C
    library cannot (nothing was done)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


@contextmanager
def frozen_for_fork() -> Iterator[None]:
    """While the block forks workers, every object this process holds is in the garbage
    collector's permanent generation (``gc.freeze``): a child's collections then never visit
    them, and so never write to their pages, which the child would otherwise copy from its
    parent page by page (the Python documentation's advice for ``fork()`` without ``exec()``).
    In this machine's paired runs the workers' first images and the strips of one image
    got faster: ``skysift run`` of one 4096^2 image 0.95x, 16 x 4096^2 0.94x, 64 x 2048^2 0.98x.

    The objects are collectable again in this process after the block; a block inside another
    (a worker of a frozen parent forking again) leaves the outer freeze to its owner.
    """
    outermost = gc.get_freeze_count() == 0
    gc.freeze()
    try:
        yield
    finally:
        if outermost:
            gc.unfreeze()


#: NumPy's switch (read once, when numpy is imported) for asking the kernel for transparent
#: huge pages for large arrays (``madvise(MADV_HUGEPAGE)``): "0" off, "1" on.
NUMPY_HUGE_PAGES_VARIABLE = "NUMPY_MADVISE_HUGEPAGE"


def numpy_without_huge_pages() -> None:
    """Have NumPy, imported after this call, put its arrays on ordinary pages, unless the
    user chose otherwise (:data:`NUMPY_HUGE_PAGES_VARIABLE` set, to "1" say).

    NumPy asks for transparent huge pages for large arrays, and on a kernel whose huge-page
    policy is ``madvise`` (the usual one) a fault on such an array then waits for the kernel
    to find, or compact, or (in a virtual machine whose balloon hands free 2 MiB blocks back
    to the host) fetch a whole 2 MiB page. On this project's machine (a Firecracker VM,
    kernel 6.18, ``defrag`` = ``madvise``) a ``skysift run`` of one 4096^2 image took 2.81 s
    with huge pages against 2.12 s without (paired runs a second apart, as a user runs it:
    0.77x); 16 x 4096^2 0.96x; 64 x 2048^2 and a 20-visit survey the same. Source
    Extractor's arrays are on ordinary pages too. The variable also reaches the processes
    skysift starts (forked workers inherit NumPy's setting anyway)."""
    os.environ.setdefault(NUMPY_HUGE_PAGES_VARIABLE, "0")
