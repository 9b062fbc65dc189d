"""Memory the C allocator holds free, given back to the system (glibc's ``malloc_trim``); the
interpreter's objects kept out of forked children's collections (:func:`frozen_for_fork`); and
the allocators NumPy, Arrow and glibc use in the ``skysift`` command (:func:`choose_allocators`).

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

__all__ = [
    "ALLOCATOR_DEFAULTS",
    "FRAME_WORKER_TRIM_THRESHOLD_BYTES",
    "MMAP_THRESHOLD_BYTES",
    "TRIM_THRESHOLD_BYTES",
    "choose_allocators",
    "frozen_for_fork",
    "keep_frames_heap",
    "keep_freed_heap",
    "release_free_heap",
]


@cache
def _c_function(name: str):
    """The C library's function ``name`` (glibc's ``malloc_trim``, ``mallopt``), or None."""
    try:
        return getattr(ctypes.CDLL(None), name, None)
    except OSError:  # no C library to load symbols from
        return None


def release_free_heap() -> bool:
    """Give the allocator's free memory back to the system (a few ms); False when this C
    library cannot (nothing was done)."""
    trim = _c_function("malloc_trim")
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


#: What the ``skysift`` command sets in its environment before NumPy and Arrow are imported
#: (read by them once, when first used), unless the user set the variable already:
#: NumPy's arrays on ordinary pages, and Arrow's buffers from the C library's ``malloc``
#: rather than Arrow's bundled mimalloc (see :func:`choose_allocators`).
ALLOCATOR_DEFAULTS = {"NUMPY_MADVISE_HUGEPAGE": "0", "ARROW_DEFAULT_MEMORY_POOL": "system"}


def choose_allocators() -> None:
    """Set :data:`ALLOCATOR_DEFAULTS` in this process's environment (a value the user set wins,
    ``NUMPY_MADVISE_HUGEPAGE=1`` say); for an entry point, before anything imports NumPy or
    pyarrow. Processes skysift starts inherit them (forked workers keep the parent's choice).

    Both choices are about memory a short process touches for the first time, which this
    project's machine (a Firecracker VM, kernel 6.18, huge-page ``defrag`` = ``madvise``)
    charges heavily for, as a cloud VM whose balloon hands free memory back to its host does:

    - NumPy asks for transparent huge pages for large arrays (``madvise(MADV_HUGEPAGE)``);
      a fault then waits for a whole 2 MiB page to be found, compacted or fetched. Paired
      runs a second apart, as a user runs them: one 4096^2 image 2.81 -> 2.12 s (0.77x),
      16 x 4096^2 0.96x, 64 x 2048^2 and a 20-visit survey unchanged. Source Extractor's
      arrays are on ordinary pages too.
    - Arrow's default pool is mimalloc; with the C library's allocator instead one 4096^2
      image took 0.92x, the 20-visit survey 0.93x and 64 x 2048^2 0.93x (paired runs, after
      the NumPy choice). skysift's tables are small: the allocator's speed does not show.
    - glibc keeps blocks of up to 32 MiB that the process frees for reuse (:func:`keep_freed_heap`):
      one 4096^2 image 0.945x with the next change (12 pairs), 64 x 2048^2 0.97x, the survey 0.96x.
    """
    for name, value in ALLOCATOR_DEFAULTS.items():
        os.environ.setdefault(name, value)
    keep_freed_heap()


#: glibc serves allocations from this size up with their own ``mmap`` (given back whole when
#: freed); smaller ones from its heap, where freed memory is reused. 32 MiB is the ceiling
#: glibc itself raises the threshold to after freeing such a block (``DEFAULT_MMAP_THRESHOLD_MAX``).
MMAP_THRESHOLD_BYTES = 32 * 2**20
#: glibc gives the top of its heap back to the system when this much is free there.
TRIM_THRESHOLD_BYTES = 64 * 2**20
#: What a process measuring one whole frame after another keeps free at its heap's top
#: (:func:`keep_frames_heap`): a 4096^2 frame's transient maps, 64 MiB each.
FRAME_WORKER_TRIM_THRESHOLD_BYTES = 256 * 2**20
#: ``mallopt`` parameters (glibc's ``malloc.h``).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4


def keep_freed_heap() -> bool:
    """Have glibc reuse the blocks of up to a few MiB a process frees instead of unmapping each
    one (``mallopt``: :data:`MMAP_THRESHOLD_BYTES`, :data:`TRIM_THRESHOLD_BYTES`); False when
    this C library has no ``mallopt`` or the user set ``MALLOC_MMAP_THRESHOLD_`` or
    ``MALLOC_TRIM_THRESHOLD_`` (theirs win).

    glibc starts with a 128 KiB threshold and raises it only after a large block is freed.
    Until then every larger block is a fresh mapping, touched page by page when first written:
    SEP's background mesh takes one of ~1 MiB for each row of background cells of a
    4096^2 image, 64 in all, each unmapped and mapped again. Whether the threshold had risen
    by then depended on whether the reader had freed a 16 MiB mask before (46,000 faults in the
    sky step without it, 16,800 with it). With the thresholds set at the start, the
    main process of one 4096^2 image makes 70,900 faults (75,000 before). The explicit
    trims (:func:`release_free_heap`) still give the heap back where the peak matters.
    """
    return _mallopt_unless_chosen({"MALLOC_MMAP_THRESHOLD_": (_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
                                   "MALLOC_TRIM_THRESHOLD_": (_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)})


def keep_frames_heap() -> bool:
    """Have glibc serve even the largest blocks from its heap (no ``mmap`` of their own) and keep
    up to :data:`FRAME_WORKER_TRIM_THRESHOLD_BYTES` free at its top: for a process that measures
    one whole frame after another (a worker of a bulk run); False, doing nothing, when this C
    library has no ``mallopt`` or the user set ``MALLOC_MMAP_MAX_`` or ``MALLOC_TRIM_THRESHOLD_``.

    A 4096^2 frame's maps (image, RMS, segmentation, SEP's filtered copy) are 64 MiB each,
    beyond the 32 MiB that glibc lets :data:`MMAP_THRESHOLD_BYTES` reach: each was a mapping of
    its own, new for every frame and touched page by page, ~70,000 page faults a frame (0.2 s of
    system time in this machine's worker). From the heap they are the last frame's pages again
    (~300 faults). The worker's peak is the same (425 MiB with 4096^2 frames); between frames it
    keeps it. Threads' arenas still map what does not fit their heaps (glibc's own fallback).
    Not for a strip worker or the process that forks them: their peak is what the memory target
    counts, and a forked child starts with every resident page of its parent.
    """
    return _mallopt_unless_chosen({"MALLOC_MMAP_MAX_": (_M_MMAP_MAX, 0),
                                   "MALLOC_TRIM_THRESHOLD_": (_M_TRIM_THRESHOLD, FRAME_WORKER_TRIM_THRESHOLD_BYTES)})


def _mallopt_unless_chosen(settings: dict[str, tuple[int, int]]) -> bool:
    """``mallopt(parameter, value)`` for each ``{environment variable: (parameter, value)}``, in
    order; False, setting nothing, when the user set one of those variables (theirs win, for
    all of them) or this C library has no ``mallopt`` and ``malloc_trim`` (glibc's, not musl's)."""
    if any(name in os.environ for name in settings):
        return False
    mallopt = _c_function("mallopt")
    if mallopt is None or _c_function("malloc_trim") is None:
        return False
    return all([bool(mallopt(parameter, value)) for parameter, value in settings.values()])
