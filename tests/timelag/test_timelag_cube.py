"""Common time grid and lazy interpolation of stacked frames."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from skysift.timelag.cube import Interpolation, stack_on_grid, time_grid
from skysift.timelag.errors import SeriesTooShort


def test_grid_covers_only_the_time_both_channels_share():
    grid = time_grid(np.array([0.0, 100.0, 200.0, 300.0]), np.array([40.0, 140.0, 240.0, 340.0]), 50.0)
    assert grid.tolist() == [40.0, 90.0, 140.0, 190.0, 240.0, 290.0]


def test_linear_signal_is_interpolated_exactly_and_chunked_along_time():
    times = np.array([0.0, 9.0, 25.0, 31.0, 47.0, 60.0])
    frames = [da.from_array(np.full((5, 6), 2.0 * t + 1.0, dtype=np.float32)) for t in times]
    grid = np.arange(0.0, 60.0, 4.0)
    cube = stack_on_grid(frames, times, grid, tile_px=4)
    assert cube.chunks[0] == (grid.size,)  # the whole time axis in one chunk per tile
    assert cube.chunks[1:] == ((4, 1), (4, 2))
    np.testing.assert_allclose(cube.compute()[:, 2, 3], 2.0 * grid + 1.0, rtol=1e-6)


def test_interpolation_reports_the_widest_gap_bridged():
    interp = Interpolation.between(np.array([0.0, 10.0, 100.0, 110.0]), np.array([5.0, 50.0, 105.0]))
    assert interp.max_gap_s == 90.0


@pytest.mark.parametrize(
    ("times_a", "times_b", "cadence"),
    [([0.0, 100.0], [200.0, 300.0], 10.0), ([0.0, 20.0], [0.0, 20.0], 10.0), ([0.0, 100.0], [0.0, 100.0], 0.0)],
)
def test_no_usable_overlap_raises_series_too_short(times_a, times_b, cadence):
    with pytest.raises(SeriesTooShort) as info:
        time_grid(np.array(times_a), np.array(times_b), cadence)
    assert info.value.reason == "series_too_short"
