"""FFT cross-correlation lag: the sign convention, bounds, undefined pixels, and sunkit-image parity."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
from sunkit_image.time_lag import time_lag

from skysift.timelag.lag import cross_correlation_lag, lag_steps


def _smooth_noise(rng, n_time, shape, width=4):
    raw = rng.standard_normal((n_time + 8 * width, *shape))
    kernel = np.exp(-0.5 * (np.arange(-3 * width, 3 * width + 1) / width) ** 2)
    return np.apply_along_axis(lambda s: np.convolve(s, kernel, mode="same"), 0, raw)


def test_b_delayed_by_k_steps_gives_plus_k_cadences():
    rng = np.random.default_rng(0)
    base = _smooth_noise(rng, 150, (3, 4), width=1)
    shifts = np.array([[0, 1, 2, 3], [5, 7, 9, 11], [-2, -4, -6, 12]])
    a = base[16:136]
    b = np.empty_like(a)
    for i, j in np.ndindex(shifts.shape):
        b[:, i, j] = base[16 - shifts[i, j]:136 - shifts[i, j], i, j]  # b(t) = a(t - shift)
    lag, peak = cross_correlation_lag(a, b, cadence_s=12.0, max_lag_s=200.0)
    np.testing.assert_array_equal(lag, shifts * 12.0)
    assert np.all(peak > 0.8)  # normalised by N, and only N - k samples overlap


def test_lags_beyond_max_lag_are_not_reported():
    rng = np.random.default_rng(1)
    base = _smooth_noise(rng, 120, (5,), width=1)
    a, b = base[20:120], base[0:100]  # b(t) = a(t - 20 steps): true lag +20 steps
    lag, _ = cross_correlation_lag(a, b, cadence_s=60.0, max_lag_s=600.0)
    assert np.all(np.abs(lag) <= 600.0)
    full, _ = cross_correlation_lag(a, b, cadence_s=60.0)
    np.testing.assert_array_equal(full, 1200.0)


def test_constant_or_nan_series_have_no_lag():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((50, 3))
    b = a.copy()
    a[:, 0] = 7.0
    b[10, 1] = np.nan
    lag, peak = cross_correlation_lag(a, b, cadence_s=1.0)
    assert np.isnan(lag[:2]).all() and np.isnan(peak[:2]).all()
    assert lag[2] == 0.0 and peak[2] == pytest.approx(1.0)


def test_same_lags_as_sunkit_image_time_lag():
    rng = np.random.default_rng(3)
    a = _smooth_noise(rng, 180, (20, 20))[:180]
    b = np.roll(a, 9, axis=0) + 0.5 * rng.standard_normal(a.shape)
    time = np.arange(180) * 240.0 * u.s
    reference = time_lag(a, b, time, lag_bounds=u.Quantity([-6, 6], u.h)).to_value(u.s)
    ours, _ = cross_correlation_lag(a, b, 240.0, 6 * 3600.0)
    np.testing.assert_array_equal(ours, reference)


def test_lag_steps_respect_series_length():
    assert lag_steps(5, 10.0).tolist() == [-4, -3, -2, -1, 0, 1, 2, 3, 4]
    assert lag_steps(100, 10.0, 25.0).tolist() == [-2, -1, 0, 1, 2]


def test_mismatched_shapes_are_rejected():
    with pytest.raises(ValueError, match="differ in shape"):
        cross_correlation_lag(np.zeros((4, 2)), np.zeros((4, 3)), 1.0)
