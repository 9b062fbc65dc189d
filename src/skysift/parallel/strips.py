"""One in-memory image detected by several processes, with the catalog one process makes.

SEP holds the GIL, so a second core needs a second process. The sky is estimated
once on the whole frame; the frame is then cut into horizontal strips with a margin,
and each forked worker (which shares the parent's arrays, copy-on-write, so nothing is
copied or pickled on the way in) detects in its strip, keeps the sources whose centre
lies in its core, and measures them on the whole frame. With blends deblended on their
own (:mod:`skysift.core.deblending`) this is the whole-frame catalog, source for source.

A source whose pixels come near a strip's cut edge could be truncated there; when
that happens (a source larger than the margin) the caller measures the frame in one
process instead, so the result never depends on the number of workers.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import pairwise
from typing import TypeVar

import numpy as np

from skysift.heap import frozen_for_fork, release_free_heap

__all__ = [
    "MIN_PIXELS_TO_SPLIT",
    "STRIP_MARGIN_PX",
    "Strip",
    "map_forked",
    "plan_strips",
    "worth_splitting",
]

#: Rows read beyond a strip's core on each side; sources up to this size are detected whole.
STRIP_MARGIN_PX = 128
#: Frames smaller than this are measured in one process (forking costs more than it saves).
MIN_PIXELS_TO_SPLIT = 2048 * 2048

T = TypeVar("T")
R = TypeVar("R")
_task: Callable | None = None


@dataclass(frozen=True)
class Strip:
    """Core rows [y0, y1) of a frame ``ny`` rows high, detected from rows [ry0, ry1)."""

    y0: int
    y1: int
    ry0: int
    ry1: int
    ny: int

    @classmethod
    def whole(cls, ny: int) -> Strip:
        return cls(0, ny, 0, ny, ny)

    @property
    def rows(self) -> slice:
        return slice(self.ry0, self.ry1)

    @property
    def is_whole(self) -> bool:
        """Whether the strip is its whole frame (detected from every row)."""
        return self.ry0 == 0 and self.ry1 == self.ny

    def on_frame(self, strip_map: np.ndarray) -> np.ndarray:
        """A map of the strip's rows (``rows``) as a map of the whole frame, zero elsewhere.

        Only the strip's rows of the result are written: the rest are pages ``np.zeros`` never
        touches, which cost no memory.
        """
        frame_map = np.zeros((self.ny, strip_map.shape[1]), dtype=strip_map.dtype)
        frame_map[self.rows] = strip_map
        return frame_map

    def owned(self, objects: np.ndarray, guard_px: int) -> tuple[np.ndarray, bool]:
        """Which ``objects`` (strip coordinates) are centred in the core, and whether any of
        those comes within ``guard_px`` of a cut edge (where it may be truncated or
        filtered differently than in the whole frame)."""
        y = objects["y"] + self.ry0
        keep = (y >= self.y0 - 0.5) & (y < self.y1 - 0.5)
        near_cut = np.zeros(len(objects), dtype=bool)
        if self.ry0 > 0:
            near_cut |= objects["ymin"] < guard_px
        if self.ry1 < self.ny:
            near_cut |= objects["ymax"] > self.ry1 - self.ry0 - 1 - guard_px
        return keep, bool(np.any(keep & near_cut))

    def reaches_cut(self, y: np.ndarray, reach_px: np.ndarray, guard_px: int) -> bool:
        """Whether any extent ``y +- reach_px`` (frame rows) comes within ``guard_px`` of a
        cut edge, beyond which the strip does not know the frame's sources."""
        low = self.ry0 > 0 and bool(np.any(y - reach_px < self.ry0 + guard_px))
        high = self.ry1 < self.ny and bool(np.any(y + reach_px > self.ry1 - 1 - guard_px))
        return low or high


def plan_strips(ny: int, n: int, margin_px: int = STRIP_MARGIN_PX) -> list[Strip]:
    """``n`` strips of (nearly) equal cores covering ``ny`` rows once, with margins."""
    edges = np.linspace(0, ny, n + 1).round().astype(int)
    return [Strip(a, b, max(0, a - margin_px), min(ny, b + margin_px), ny)
            for a, b in pairwise(edges.tolist())]


def worth_splitting(shape: tuple[int, int], workers: int) -> bool:
    """Whether a frame of ``shape`` gains from ``workers`` strip processes."""
    ny, nx = shape
    return workers > 1 and ny * nx >= MIN_PIXELS_TO_SPLIT and ny >= 4 * STRIP_MARGIN_PX * workers


def _run(item):
    return _task(item)


def map_forked(func: Callable[[T], R], items: list[T], workers: int) -> list[R]:
    """``[func(item) for item in items]`` in ``workers`` forked processes.

    The children inherit ``func`` and the arrays it closes over, so only the items
    and the results cross process boundaries. A child killed by the kernel raises
    ``BrokenProcessPool`` here (a ``multiprocessing.Pool`` would wait for it forever).
    """
    global _task
    _task = func
    release_free_heap()  # the children start with what the parent holds resident, free heap included
    try:
        with (frozen_for_fork(),
              ProcessPoolExecutor(min(workers, len(items)), mp_context=multiprocessing.get_context("fork")) as pool):
            return list(pool.map(_run, items))
    finally:
        _task = None
