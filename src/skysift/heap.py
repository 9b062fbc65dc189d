"""Memory the C allocator holds free, given back to the system (glibc's ``malloc_trim``).

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
from functools import cache

__all__ = ["release_free_heap"]


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
