"""skysift.core.background on skies whose level and noise are known.

SEP estimates each mesh cell's sky with SExtractor's clipped mode: it clips at +-3 sigma until
the sigma converges. For Gaussian noise the converged sigma is the standard deviation of a
normal truncated at +-3 of itself, ``t sigma`` with ``t^2 = 1 - 2 k phi(k) / erf(k / sqrt 2)``,
``k = 3 t``: t = 0.98485. That (not sigma) is what a correct estimator returns.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sep

from skysift.core import background
from skysift.core.background import estimate_background, rms_floor, subtract_sky
from skysift.settings import BackgroundSettings

SETTINGS = BackgroundSettings()  # 64 px cells, 3x3 median filter


def clipped_sigma_factor(nsigma: float = 3.0) -> float:
    """``t`` such that a Gaussian clipped at +-nsigma * t sigma has standard deviation t sigma."""
    t = 1.0
    for _ in range(100):
        k = nsigma * t
        phi = math.exp(-k * k / 2) / math.sqrt(2 * math.pi)
        t = math.sqrt(1.0 - 2.0 * k * phi / math.erf(k / math.sqrt(2)))
    return t


def sky_level(bkg: background.Background, shape: tuple[int, int]) -> np.ndarray:
    """The full-resolution level map (subtracted from zeros, negated): the module keeps none."""
    zeros = np.zeros(shape, np.float32)
    bkg.subtract_from(zeros)
    return -zeros


def test_the_clipped_sigma_factor_is_the_known_one():
    assert clipped_sigma_factor() == pytest.approx(0.98485, abs=1e-5)


def test_a_constant_sky_is_its_own_level_and_subtracts_to_zero():
    data = np.full((64, 64), 7.0, np.float32)
    bkg = estimate_background(data, None, SETTINGS)
    assert bkg.global_level == 7.0
    assert (sky_level(bkg, data.shape) == 7.0).all()
    bkg.subtract_from(data)
    assert (data == 0.0).all()


def test_gaussian_noise_gives_the_level_and_the_clipped_sigma():
    """512^2 pixels, sky 100, sigma 10 (30 seeds: level scatter 0.05, rms scatter 0.02)."""
    data = np.random.default_rng(0).normal(100.0, 10.0, (512, 512)).astype(np.float32)
    bkg = estimate_background(data, None, SETTINGS)
    expected_rms = 10.0 * clipped_sigma_factor()  # 9.8485
    assert bkg.global_level == pytest.approx(100.0, abs=0.25)
    assert bkg.global_rms == pytest.approx(expected_rms, abs=0.08)
    assert bkg.rms.dtype == np.float32 and bkg.rms.shape == data.shape
    assert float(np.median(bkg.rms)) == pytest.approx(expected_rms, abs=0.08)
    level = sky_level(bkg, data.shape)
    assert np.abs(level - 100.0).max() < 1.5  # each cell's mode: 4096 pixels, not the whole frame


def test_a_tilted_sky_is_followed():
    """A plane rising 38 counts across the frame: the level map stays within 0.1 count of it."""
    yy, xx = np.mgrid[:256, :256]
    plane = (50.0 + 0.1 * xx + 0.05 * yy).astype(np.float32)
    level = sky_level(estimate_background(plane, None, SETTINGS), plane.shape)
    assert np.abs(level - plane).max() < 0.1


def test_masked_pixels_do_not_contribute():
    """A masked band of 1000s over a 7 sky: unmasked, the level map would reach 1500."""
    data = np.full((64, 64), 7.0, np.float32)
    data[:, 40:] = 1000.0
    mask = np.zeros(data.shape, bool)
    mask[:, 40:] = True
    bkg = estimate_background(data, mask, SETTINGS)
    assert bkg.global_level == 7.0
    assert (sky_level(bkg, data.shape) == 7.0).all()


@pytest.mark.parametrize(("shape", "box"), [
    ((1000, 1000), 64),  # the setting
    ((100, 40), 10),  # a quarter of the smaller side: four cells across
    ((20, 20), 8),  # never below 8 px
    ((3, 2), 8),  # a quarter rounds to 0: 8 px
])
def test_the_mesh_shrinks_to_four_cells_across_a_small_image(shape, box, monkeypatch):
    seen = []
    real = sep.Background

    def spy(data, **kwargs):
        seen.append((kwargs["bw"], kwargs["bh"], kwargs["fw"], kwargs["fh"]))
        return real(data, **kwargs)

    monkeypatch.setattr(background.sep, "Background", spy)
    estimate_background(np.zeros(shape, np.float32), None, SETTINGS)
    assert seen == [(box, box, 3, 3)]


def test_a_small_image_still_gets_a_varying_background():
    """Left half 0, right half 100 on 64^2: with 16 px cells the level map follows the step;
    one 64 px cell would be flat."""
    data = np.zeros((64, 64), np.float32)
    data[:, 32:] = 100.0
    level = sky_level(estimate_background(data, None, SETTINGS), data.shape)
    assert (level[:, 0] < 20.0).all() and (level[:, -1] > 80.0).all()


def test_the_rms_floor_is_the_lowest_positive_value_between_the_outer_cell_centres():
    rms = np.full((8, 8), 5.0, np.float32)
    rms[0, :] = -2.0  # the spline's overshoot beyond the outer cell centres
    rms[:, 7] = 0.5
    rms[3, 4] = 1.5  # the lowest value inside (box 4: rows and columns 2 to 5)
    rms[4, 4] = 0.0  # not positive: skipped
    assert rms_floor(rms, 4) == np.float32(1.5)


def test_the_rms_floor_of_a_positive_map_is_its_lowest_value_between_the_outer_cell_centres():
    rms = np.full((8, 8), 5.0, np.float32)
    rms[0, :] = 0.75  # beyond the outer cell centres: not the floor
    rms[2, 5] = 1.25
    assert rms_floor(rms, 4) == np.float32(1.25) and isinstance(rms_floor(rms, 4), np.float32)


def test_the_rms_floor_falls_back_to_any_positive_value_then_to_the_smallest_float32():
    rms = np.zeros((8, 8), np.float32)
    rms[0, 0] = 0.25  # outside the hull of cell centres, but positive
    assert rms_floor(rms, 4) == np.float32(0.25)
    assert rms_floor(np.zeros((8, 8), np.float32), 4) == np.finfo(np.float32).tiny


def test_a_noiseless_frames_rms_map_is_the_floor_not_zero():
    bkg = estimate_background(np.full((64, 64), 7.0, np.float32), None, SETTINGS)
    assert (bkg.rms == np.finfo(np.float32).tiny).all()


def test_subtract_sky_removes_the_level_and_zeroes_masked_pixels():
    data = np.full((64, 64), 7.0, np.float32)
    data[5, 5] = 1e6
    mask = np.zeros(data.shape, bool)
    mask[5, 5] = True
    bkg, sep_mask = subtract_sky(data, mask, SETTINGS)
    assert sep_mask is mask and bkg.global_level == 7.0
    assert (data == 0.0).all()  # the masked pixel is empty sky, not 1e6 - 7


def test_subtract_sky_gives_sep_no_mask_when_nothing_is_masked():
    data = np.full((64, 64), 7.0, np.float32)
    _bkg, sep_mask = subtract_sky(data, np.zeros(data.shape, bool), SETTINGS)
    assert sep_mask is None and (data == 0.0).all()


def test_the_broadcast_of_false_is_told_from_a_mask_without_visiting_its_pixels():
    """subtract_sky gives SEP no mask for the broadcast of False (answered from its strides, not by
    visiting 16 M elements) nor for an all-False array; a mask with one pixel set is kept."""
    from skysift.core.masks import masked_or_none, nothing_masked

    broadcast = np.broadcast_to(np.False_, (4096, 4096))
    assert nothing_masked(broadcast) and masked_or_none(broadcast) is None
    assert not nothing_masked(np.zeros((3, 3), bool)) and masked_or_none(np.zeros((3, 3), bool)) is None
    assert not nothing_masked(np.broadcast_to(np.True_, (3, 3)))
    one = np.zeros((3, 3), bool)
    one[1, 2] = True
    assert masked_or_none(one) is one
    data = np.random.default_rng(1).normal(10, 1, (128, 128)).astype(np.float32)
    _bkg, mask = subtract_sky(data, np.broadcast_to(np.False_, data.shape), BackgroundSettings(box_px=32))
    assert mask is None and abs(float(np.median(data))) < 0.2
