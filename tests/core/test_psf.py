"""skysift.core.psf: the seeing fitted to Moffat stars of known FWHM, and the stamps it is fitted to.

A circular Moffat ``A (1 + r^2 / alpha^2)^-beta`` has FWHM ``2 alpha sqrt(2^(1/beta) - 1)``.
The stamps here sample it at pixel centres, as the fitted model does, so a fit must recover
the FWHM to the optimiser's precision whatever beta, centre, sky or starting guess.
(Header seeing keywords are tested in tests/test_header_seeing.py.)
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import example, given, settings
from hypothesis import strategies as st

from skysift.core import flags as F
from skysift.core.psf import (
    MAX_STARS,
    _fit_fwhm,
    _MoffatProblem,
    candidate_stamps,
    header_pixel_scale_arcsec,
    header_seeing,
    seeing_fwhm_px,
)


def moffat_stamp(fwhm: float, beta: float = 4.765, *, dx: float = 0.0, dy: float = 0.0, sky: float = 0.0,
                 half: int | None = None) -> np.ndarray:
    """A Moffat of peak 1000 and this FWHM sampled at pixel centres, ``(dx, dy)`` off the middle pixel."""
    half = max(5, math.ceil(2.5 * fwhm)) if half is None else half  # as candidate_stamps cuts them
    alpha = fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    return 1000.0 * (1.0 + ((xx - dx) ** 2 + (yy - dy) ** 2) / alpha**2) ** (-beta) + sky


@pytest.mark.parametrize(("fwhm", "beta", "dx", "dy", "sky", "guess"), [
    (3.0, 3.0, 0.0, 0.0, 0.0, 3.0),
    (3.0, 4.765, 0.3, -0.2, 5.0, 3.0),  # off-centre, on a residual sky
    (5.0, 2.5, 0.4, 0.1, 0.0, 3.0),  # a wide, winged profile from a poor guess
    (2.0, 10.0, -0.5, 0.5, -2.0, 2.6),  # nearly Gaussian, on a negative sky
])
def test_a_moffat_fit_recovers_the_fwhm(fwhm, beta, dx, dy, sky, guess):
    assert _fit_fwhm(moffat_stamp(fwhm, beta, dx=dx, dy=dy, sky=sky), guess) == pytest.approx(fwhm, rel=1e-6)


def test_a_stamp_of_noise_is_no_fit():
    assert _fit_fwhm(np.random.default_rng(0).normal(0.0, 1.0, (17, 17)), 3.0) is None


def test_the_seeing_is_the_median_fwhm_of_the_confident_point_sources():
    stamps = {i: moffat_stamp(fwhm) for i, fwhm in enumerate([2.8, 3.0, 3.2, 3.4, 9.0])}
    score = np.array([0.99, 0.95, 0.9, 0.81, 0.1])  # the last, wide one a galaxy
    fwhm_px = np.array([2.8, 3.0, 3.2, 3.4, 9.0])
    assert seeing_fwhm_px(stamps, score, fwhm_px) == pytest.approx(3.1, rel=1e-6)
    score[3] = 0.8  # no longer confident: the median of three
    assert seeing_fwhm_px(stamps, score, fwhm_px) == pytest.approx(3.0, rel=1e-6)
    score[2] = 0.5
    assert seeing_fwhm_px(stamps, score, fwhm_px) is None  # fewer than three stars


def test_the_seeing_uses_at_most_max_stars():
    """Stars come in the order of the stamps (brightest first): 12 at 3 px, 13 fainter at 5 px."""
    fwhms = [3.0] * MAX_STARS + [5.0] * (MAX_STARS + 1)
    stamps = {i: moffat_stamp(fwhm) for i, fwhm in enumerate(fwhms)}
    assert seeing_fwhm_px(stamps, np.ones(len(fwhms)), np.array(fwhms)) == pytest.approx(3.0, rel=1e-6)


def test_candidate_stamps_are_the_brightest_clean_unblended_sources_away_from_the_edge():
    data = np.arange(100 * 100, dtype=np.float32).reshape(100, 100)
    columns = {
        "x": np.array([50.0, 30.2, 70.0, 50.0, 3.0, 20.0, 80.0]),
        "y": np.array([50.0, 29.7, 70.0, 20.0, 50.0, 80.0, 80.0]),
        "snr": np.array([100.0, 200.0, 50.0, 300.0, 40.0, 500.0, 20.0]),
        "flags": np.array([0, 0, 0, F.MERGED, 0, F.SATURATED, 0]),
        "fwhm_px": np.array([3.0, 1.0, 4.1, 3.0, 3.0, 3.0, 3.0]),
    }
    stamps = candidate_stamps(data, columns)
    # 3: blended, 4: its stamp would leave the frame, 5: saturated, 6: below SNR 30;
    assert list(stamps) == [1, 0, 2]  # the rest by decreasing SNR
    assert stamps[0].dtype == np.float64 and stamps[0].shape == (17, 17)  # half = ceil(2.5 * 3) = 8
    assert stamps[1].shape == (11, 11)  # at least 5 px each side
    assert stamps[2].shape == (23, 23)  # ceil(2.5 * 4.1) = 11
    assert (stamps[1] == data[25:36, 25:36]).all()  # centred on the nearest pixel (30, 30)
    assert list(candidate_stamps(data, columns, n=2)) == [1, 0]


@pytest.mark.parametrize(("cards", "scale", "fwhm_px"), [
    ([("SEEING", 3.0, "FWHM in pixels (0.4 arcsec each)")], 0.4, 3.0),  # the unit named first wins
    ([("SEEING", 0.02, "[arcmin]")], 0.4, 3.0),
    ([("SEEING", 0.5 / 3600, "[deg] FWHM")], 0.25, 2.0),
])
def test_header_seeing_units_from_the_comment(cards, scale, fwhm_px):
    seeing = header_seeing(fits.Header(cards), scale)
    assert seeing is not None and seeing.fwhm_px == pytest.approx(fwhm_px, rel=1e-9)


@pytest.mark.parametrize(("cards", "scale"), [
    ([("PIXSCALE", 0.4)], 0.4),
    ([("PIXSCALE", 0.0), ("SECPIX", 0.27)], 0.27),  # a placeholder is skipped
    ([("SECPIX1", 0.5), ("PIXSCAL1", 0.26)], 0.26),  # PIXSCAL1 comes first
    ([("SECPIX", "n/a")], None),
    ([], None),
])
def test_header_pixel_scale(cards, scale):
    assert header_pixel_scale_arcsec(fits.Header(cards)) == scale


def _bounded_fit_fwhm(stamp: np.ndarray, guess_fwhm: float) -> float | None:
    """The fit as it was before MINPACK's Levenberg-Marquardt went first: scipy's bounded
    trust region alone, on the same problem, with the same acceptance (the reference)."""
    problem = _MoffatProblem.of(stamp, guess_fwhm)
    try:
        return problem.fwhm(problem.solve(bounds=(problem.lower, problem.upper)))
    except ValueError:
        return None


def test_a_fit_that_leaves_the_bounds_is_the_bounded_fit():
    """A star 3 px off the stamp's middle: the unbounded fit finds it there (beyond the 2 px the
    centre may move), so the fit is done again within the bounds, as it always was."""
    stamp = moffat_stamp(3.0, 3.0, dx=3.0, dy=0.5, half=9)
    bounded = _bounded_fit_fwhm(stamp, 3.0)
    assert bounded is not None and abs(bounded - 3.0) > 1e-3  # the bound changes the answer
    assert _fit_fwhm(stamp, 3.0) == pytest.approx(bounded, rel=1e-9)


@settings(max_examples=60, deadline=None)
@given(fwhm=st.floats(1.5, 8.0), beta=st.floats(1.5, 12.0), dx=st.floats(-2.5, 2.5), dy=st.floats(-2.5, 2.5),
       sky=st.floats(-20.0, 20.0), noise=st.sampled_from([0.0, 1.0, 10.0]), guess=st.floats(1.5, 8.0),
       seed=st.integers(0, 2**16))
@example(fwhm=1.5, beta=9.0, dx=1.90625, dy=1.0, sky=0.0, noise=0.0, guess=2.0, seed=0)
def test_the_fit_is_the_bounded_fit_or_finds_the_star_it_missed(fwhm, beta, dx, dy, sky, noise, guess, seed):
    """Whatever the star, its sky, noise and the starting guess: the FWHM of the bounded fit when
    that one finds one, and on a noiseless star within the bounds, its true FWHM (the bounded fit
    alone missed some, e.g. FWHM 1.5 px and beta 9 at (1.9, 1.0) px: it ran out of steps)."""
    stamp = moffat_stamp(fwhm, beta, dx=dx, dy=dy, sky=sky)
    stamp = stamp + np.random.default_rng(seed).normal(0.0, noise, stamp.shape)
    bounded = _bounded_fit_fwhm(stamp, guess)
    fitted = _fit_fwhm(stamp, guess)
    if bounded is not None:
        assert fitted == pytest.approx(bounded, rel=1e-4)
    if noise == 0.0 and max(abs(dx), abs(dy)) < 1.99:
        assert fitted == pytest.approx(fwhm, rel=1e-5)


def test_a_stamp_with_a_nan_is_no_fit():
    stamp = moffat_stamp(3.0)
    stamp[4, 4] = np.nan
    assert _fit_fwhm(stamp, 3.0) is None
