"""skysift.core.classification: the stellar locus from known sizes, and star scores against it.

The score is ``Phi((2 sigma - excess) / sigma)``, ``excess = r50 / r50_psf - 1`` and
``sigma = hypot(locus scatter, 1 / SNR)`` (widened for APER_CONTAMINATED sources): a source
exactly on the locus scores ``Phi(2)``, one two sigma above it 1/2. The expected values below
are computed from ``math.erf``, apart from the module's scipy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from skysift.core import flags as F
from skysift.core.classification import (
    CONTAMINATED_SIZE_SCATTER,
    MIN_LOCUS_MEMBERS,
    StellarLocus,
    star_score,
    stellar_locus,
)


def phi(z: float) -> float:
    """The standard normal's cumulative distribution."""
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def sources(r50, snr=100.0, flags=0):
    r50 = np.asarray(r50, dtype=np.float64)
    return r50, np.broadcast_to(np.float64(snr), r50.shape).copy(), np.broadcast_to(np.int64(flags), r50.shape).copy()


# -- the locus ----------------------------------------------------------------------------------
def test_identical_bright_stars_make_an_exact_locus_and_galaxies_do_not_move_it():
    r50, snr, flags = sources([1.5] * 10 + [3.0, 4.0, 6.0])
    locus = stellar_locus(r50, snr, flags)
    assert locus == StellarLocus(r50_px=1.5, scatter=0.02, members=10)  # scatter floored at 2%


def test_the_locus_scatter_is_the_normalised_mad_of_its_members():
    sizes = [1.9, 1.95, 2.0, 2.0, 2.0, 2.05, 2.1]  # |r / 2 - 1|: 0.05, 0.025, 0, 0, 0, 0.025, 0.05
    locus = stellar_locus(*sources(sizes))
    assert locus.r50_px == 2.0 and locus.members == 7
    assert locus.scatter == pytest.approx(0.025 * 1.4826, rel=1e-12)


def test_faint_flagged_or_tiny_sources_are_not_on_the_locus():
    r50, snr, flags = sources([2.0] * 5 + [1.0] * 3 + [1.2] * 3 + [0.3] * 5)
    snr[5:8] = 30.0  # not above MIN_LOCUS_SNR
    flags[8:11] = F.SATURATED
    assert stellar_locus(r50, snr, flags).r50_px == 2.0  # 0.3 px: a hot pixel, not the PSF


def test_too_few_stars_make_no_locus_and_scores_are_nan():
    r50, snr, flags = sources([1.5] * (MIN_LOCUS_MEMBERS - 1))
    assert stellar_locus(r50, snr, flags) is None
    score = star_score(r50, snr, None)
    assert score.dtype == np.float32 and np.isnan(score).all() and len(score) == MIN_LOCUS_MEMBERS - 1


def test_contaminated_stars_are_left_out_while_enough_others_remain():
    """Ten contaminated stars measured 15% small (their correction overdone) would set the
    locus, the compact end, if they were used."""
    r50, snr, flags = sources([2.0] * 5 + [1.7] * 10)
    flags[5:] = F.APER_CONTAMINATED
    assert stellar_locus(r50, snr, flags).r50_px == 2.0
    flags[4] = F.APER_CONTAMINATED  # four clean ones are too few: all are used
    assert stellar_locus(r50, snr, flags).r50_px == 1.7


# -- the score ------------------------------------------------------------------------------------
LOCUS = StellarLocus(r50_px=2.0, scatter=0.05, members=20)


def test_scores_at_known_distances_from_the_locus():
    r50 = np.array([2.0, 2.0 * (1 + 2 * 0.05), 2.0 * (1 + 4 * 0.05), 1.8])
    score = star_score(r50, np.full(4, 1e9), LOCUS)  # SNR so high that the locus scatter is sigma
    assert score.tolist() == pytest.approx([phi(2.0), 0.5, phi(-2.0), phi(4.0)], abs=1e-6)


def test_scores_are_bounded_and_fall_as_sources_grow():
    r50 = np.linspace(1.0, 10.0, 50)
    score = star_score(r50, np.full(50, 200.0), LOCUS)
    assert ((score >= 0) & (score <= 1)).all()
    assert (np.diff(score) <= 0).all() and score[0] > 0.99 and score[-1] < 1e-6


def test_a_noisier_size_is_judged_against_a_wider_spread():
    """At SNR 5 (sigma = hypot(0.05, 0.2)) a source 30% larger than the PSF is more likely a
    star than not; at SNR 1000 (sigma = hypot(0.05, 0.001)) it is clearly not."""
    r50 = np.array([2.6, 2.6])
    score = star_score(r50, np.array([5.0, 1000.0]), LOCUS)
    noisy, sharp = math.hypot(0.05, 0.2), math.hypot(0.05, 0.001)
    assert score.tolist() == pytest.approx([phi((2 * noisy - 0.3) / noisy), phi((2 * sharp - 0.3) / sharp)], abs=1e-6)
    assert score[0] > 0.7 and score[1] < 0.01


def test_snr_below_one_counts_as_one():
    score = star_score(np.array([3.0, 3.0]), np.array([0.01, 1.0]), LOCUS)
    assert score[0] == score[1] == pytest.approx(phi((2 * math.hypot(0.05, 1.0) - 0.5) / math.hypot(0.05, 1.0)), abs=1e-6)


def test_a_contaminated_source_gets_the_wider_size_scatter():
    r50 = np.array([2.3, 2.3])
    flags = np.array([0, F.APER_CONTAMINATED])
    score = star_score(r50, np.full(2, 1e9), LOCUS, flags)
    wide = math.hypot(0.05, CONTAMINATED_SIZE_SCATTER)
    assert score.tolist() == pytest.approx([phi((2 * 0.05 - 0.15) / 0.05), phi((2 * wide - 0.15) / wide)], abs=1e-6)
    assert score[1] > 0.5 > score[0]


def test_a_source_without_a_size_scores_one_half():
    score = star_score(np.array([np.nan, 2.0]), np.array([50.0, 50.0]), LOCUS)
    assert score[0] == 0.5 and score[1] > 0.97
