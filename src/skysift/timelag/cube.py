"""Stacking aligned frames into a cube on a common, evenly spaced time grid.

Two channels are never observed at the same instants (AIA takes 171 and 193 a few
seconds apart, and cadences jitter), and the FFT cross-correlation needs one even
grid. Each channel's frames are stacked lazily (one dask chunk per frame), rechunked
so that the whole time axis of a spatial tile is one chunk, and linearly
interpolated in time onto the grid inside each tile.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask.array as da
import numpy as np

from skysift.timelag.errors import SeriesTooShort

__all__ = ["TILE_PX", "Interpolation", "stack_on_grid", "time_grid"]

#: Spatial tile of the rechunked cube, pixels: 180 frames x 128 x 128 float32 = 12 MB.
TILE_PX = 128


def time_grid(times_a_s: np.ndarray, times_b_s: np.ndarray, cadence_s: float, min_steps: int = 4) -> np.ndarray:
    """Evenly spaced times (seconds, same origin as the inputs) covered by both channels.

    The grid starts at the later of the two first frames and stops at or before the
    earlier of the two last frames, so every grid time is inside both series.
    """
    if cadence_s <= 0:
        raise SeriesTooShort(f"cadence must be positive, got {cadence_s} s")
    start = max(times_a_s.min(), times_b_s.min())
    stop = min(times_a_s.max(), times_b_s.max())
    if stop <= start:
        raise SeriesTooShort(
            f"the two channels do not overlap in time (A: {times_a_s.min():.0f}..{times_a_s.max():.0f} s, "
            f"B: {times_b_s.min():.0f}..{times_b_s.max():.0f} s)"
        )
    n = int(np.floor((stop - start) / cadence_s + 1e-9)) + 1
    if n < min_steps:
        raise SeriesTooShort(
            f"only {n} time steps of {cadence_s:g} s fit in the {stop - start:.0f} s the channels share; "
            f"need at least {min_steps}: widen --start/--end or shorten --cadence"
        )
    return start + cadence_s * np.arange(n)


@dataclass(frozen=True)
class Interpolation:
    """Linear interpolation from frame times onto grid times: ``(1-w) f[i0] + w f[i1]``."""

    i0: np.ndarray
    i1: np.ndarray
    weight: np.ndarray
    max_gap_s: float  # widest frame gap bridged by the interpolation, seconds

    @classmethod
    def between(cls, frame_times_s: np.ndarray, grid_s: np.ndarray) -> Interpolation:
        """Indices and weights for sorted, distinct ``frame_times_s`` (seconds)."""
        t = np.asarray(frame_times_s, dtype=np.float64)
        if t.size < 2 or np.any(np.diff(t) <= 0):
            raise SeriesTooShort("need at least two frames with distinct, increasing times")
        if grid_s.min() < t[0] - 1e-6 or grid_s.max() > t[-1] + 1e-6:
            raise SeriesTooShort("the time grid extends beyond the frames: cannot extrapolate")
        i1 = np.clip(np.searchsorted(t, grid_s, side="left"), 1, t.size - 1)
        i0 = i1 - 1
        weight = np.clip((grid_s - t[i0]) / (t[i1] - t[i0]), 0.0, 1.0)
        gaps = (t[i1] - t[i0])[(weight > 0) & (weight < 1)]
        return cls(i0, i1, weight.astype(np.float32), float(gaps.max()) if gaps.size else 0.0)

    def apply(self, block: np.ndarray) -> np.ndarray:
        """Interpolate a (n_frames, ny, nx) block onto the grid: (n_grid, ny, nx) float32."""
        w = self.weight[:, None, None]
        return (block[self.i0] * (1 - w) + block[self.i1] * w).astype(np.float32, copy=False)


def stack_on_grid(frames: list[da.Array], frame_times_s: np.ndarray, grid_s: np.ndarray, tile_px: int = TILE_PX) -> da.Array:
    """A lazy (n_grid, ny, nx) float32 cube from lazily aligned 2-D frames.

    Parameters
    ----------
    frames : list of dask arrays, each (ny, nx)
        Aligned frames, in the order of ``frame_times_s``.
    frame_times_s, grid_s : ndarray
        Frame and grid times, seconds from a common origin.
    tile_px : int
        Spatial chunk size of the result; its time axis is a single chunk.
    """
    interp = Interpolation.between(frame_times_s, grid_s)
    cube = da.stack(frames, axis=0).rechunk({0: -1, 1: tile_px, 2: tile_px})
    return cube.map_blocks(
        interp.apply,
        chunks=((grid_s.size,), *cube.chunks[1:]),
        dtype=np.float32,
        meta=np.empty((0, 0, 0), dtype=np.float32),
    )
