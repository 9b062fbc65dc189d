"""Measured accuracy on a synthetic sky with known injected stars and galaxies.

Acceptance figures (issue 2): for isolated point sources with true SNR >= 10,
completeness >= 0.97, median |flux/true - 1| <= 0.02, median position error
<= 0.1 px; purity >= 0.98. Stars with a neighbour within 8 px (issue 14): off by more
than 10% less often than Source Extractor, by more than twice the fraction's standard
error (undetected companions corrected too). Isolated: no other injected source within 5 FWHM and
at least 5 px from the edges. A detection counts as real (purity) when it lies
within one FWHM of an injected source.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from scipy.spatial import cKDTree

from sky_factory import write_sky
from skysift.analysis.synthetic import effective_area_px
from skysift.core import flags as F
from skysift.pipeline.image import process_image
from skysift.settings import Settings


@pytest.fixture(scope="module")
def matched(truth_sky, tmp_path_factory):
    path, sky, spec = truth_sky
    result = process_image(str(path), Settings.load(home=tmp_path_factory.mktemp("h")))
    cat = result.sources.to_pandas()
    truth = sky.truth
    txy = np.c_[truth["x"], truth["y"]]
    neighbour = cKDTree(txy).query(txy, k=2)[0][:, 1]
    dist, index = cKDTree(np.c_[cat["x"], cat["y"]]).query(txy)
    edge = (truth["x"] > 5) & (truth["y"] > 5) & (truth["x"] < spec.nx - 6) & (truth["y"] < spec.ny - 6)
    isolated = (truth["kind"] == "star") & (neighbour > 5 * spec.fwhm_px) & edge & (truth["snr_true"] >= 10)
    return cat, truth, isolated, dist, index, spec, result


def test_completeness_of_isolated_point_sources(matched):
    _, _, isolated, dist, _, _spec, _ = matched
    assert isolated.sum() > 150
    completeness = (dist[isolated] < 1.0).mean()
    assert completeness >= 0.97


def test_flux_and_position_accuracy(matched):
    cat, truth, isolated, dist, index, _, _ = matched
    found = isolated & (dist < 1.0)
    ratio = cat["flux"].to_numpy()[index[found]] / truth["flux"][found]
    assert np.median(np.abs(ratio - 1.0)) <= 0.02
    assert abs(np.median(ratio) - 1.0) <= 0.01
    assert np.median(dist[found]) <= 0.1
    # errors are honest: the scatter of (measured - true) / error is about one
    pull = (cat["flux"].to_numpy()[index[found]] - truth["flux"][found]) / cat["flux_err"].to_numpy()[index[found]]
    assert 0.7 < np.median(np.abs(pull)) / 0.6745 < 1.4


def test_purity(matched):
    cat, truth, _, _, _, spec, _ = matched
    nearest, _ = cKDTree(np.c_[truth["x"], truth["y"]]).query(np.c_[cat["x"], cat["y"]])
    assert (nearest < spec.fwhm_px).mean() >= 0.98


def test_sky_positions_honour_sip_distortion(matched):
    cat, truth, isolated, dist, index, _, _ = matched
    found = isolated & (dist < 1.0) & (truth["snr_true"] > 50)
    measured = SkyCoord(cat["ra"].to_numpy()[index[found]] * u.deg, cat["dec"].to_numpy()[index[found]] * u.deg)
    true = SkyCoord(truth["ra"][found] * u.deg, truth["dec"][found] * u.deg)
    assert np.median(measured.separation(true).arcsec) < 0.02  # 0.05 px at 0.4"/px; SIP is ~1.5 px at the corners


def test_star_galaxy_score_separates_the_injected_kinds(matched):
    cat, truth, isolated, dist, index, _, _ = matched
    score = cat["star_score"].to_numpy()
    stars = isolated & (dist < 1.0) & (truth["snr_true"] > 20)
    galaxies = (truth["kind"] == "galaxy") & (dist < 1.0) & (truth["snr_true"] > 30) & (truth["r_eff_px"] > 2.0)
    assert (score[index[stars]] > 0.5).mean() >= 0.95
    assert (score[index[galaxies]] < 0.5).mean() >= 0.90


def test_image_quality_figures(matched):
    *_, spec, result = matched
    row = result.record.to_row()
    assert row["seeing_fwhm_px"] == pytest.approx(spec.fwhm_px, rel=0.1)
    assert row["background_level"] == pytest.approx(spec.sky_counts, rel=0.01)
    expected_rms = np.sqrt(spec.sky_counts / spec.gain + (spec.read_noise_e / spec.gain) ** 2)
    assert row["background_rms"] == pytest.approx(expected_rms, rel=0.05)
    assert row["zero_point_ab"] == spec.zero_point
    # 5-sigma point source with optimal weighting: 5 * sqrt(noise variance * PSF effective area)
    optimal = 5.0 * expected_rms * np.sqrt(effective_area_px(spec.fwhm_px))
    assert row["limit_mag_5sigma"] == pytest.approx(spec.zero_point - 2.5 * np.log10(optimal), abs=0.3)


#: Source Extractor 2.25 (its defaults, MASK_TYPE CORRECT, with skysift's threshold and
#: filter: ``benchmarks/common.run_source_extractor``) on ``crowded_sky`` below: 193 of the
#: 491 stars with a neighbour within 8 px it found were off by more than 10% (0.393).
#: skysift measured 0.656 before it corrected neighbours (issue 14 item 3), 0.400 when it
#: corrected them as Source Extractor does, 0.301 (153 of 509) with undetected companions
#: inside the isophotes corrected too.
SOURCE_EXTRACTOR_CROWDED_OFF = 0.393
#: 2% of ~490 stars: one standard error of that fraction; skysift must be below Source
#: Extractor by twice that.
CROWDED_MARGIN = 0.04


@pytest.fixture(scope="module")
def crowded_sky(tmp_path_factory):
    """1024^2 with 2,500 stars and 500 galaxies: 721 stars (true SNR >= 10) have a neighbour within 8 px."""
    path, sky, _spec = write_sky(tmp_path_factory.mktemp("crowded") / "crowded.fits", size=1024, n_stars=2500,
                                 n_galaxies=500, seed=14, header={"SURVEY": "test"})
    cat = process_image(str(path), Settings.load(home=tmp_path_factory.mktemp("h"))).sources.to_pandas()
    return cat, sky.truth


def test_stars_with_a_neighbour_are_off_less_often_than_with_source_extractor(crowded_sky):
    cat, truth = crowded_sky
    txy = np.c_[truth["x"], truth["y"]]
    neighbour = cKDTree(txy).query(txy, k=2)[0][:, 1]
    edge = (truth["x"] > 5) & (truth["y"] > 5) & (truth["x"] < 1018) & (truth["y"] < 1018)
    crowded = (truth["kind"] == "star") & (neighbour <= 8.0) & edge & (truth["snr_true"] >= 10)
    dist, index = cKDTree(np.c_[cat["x"], cat["y"]]).query(txy)
    found = crowded & (dist < 1.0)
    assert found.sum() > 450
    ratio = cat["flux"].to_numpy()[index[found]] / truth["flux"][found]
    assert np.mean(np.abs(ratio - 1) > 0.1) <= SOURCE_EXTRACTOR_CROWDED_OFF - CROWDED_MARGIN
    assert np.median(np.abs(ratio - 1)) <= 0.05  # Source Extractor 0.057; 0.24 before item 3, 0.059 without companions
    # those whose neighbours covered over 10% of the area they were measured on say so, as
    # often as Source Extractor's flag 1 does (0.454 of these stars)
    assert np.mean((cat["flags"].to_numpy()[index[found]] & F.APER_CONTAMINATED) != 0) == pytest.approx(0.454, abs=0.05)
