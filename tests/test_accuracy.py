"""Measured accuracy on a synthetic sky with known injected stars and galaxies.

Acceptance figures (issue 2): for isolated point sources with true SNR >= 10,
completeness >= 0.97, median |flux/true - 1| <= 0.02, median position error
<= 0.1 px; purity >= 0.98. Isolated: no other injected source within 5 FWHM and
at least 5 px from the edges. A detection counts as real (purity) when it lies
within one FWHM of an injected source.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from scipy.spatial import cKDTree

from skysift.pipeline import process_image
from skysift.settings import Settings
from skysift.synthetic import effective_area_px


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
    row = result.image_row
    assert row["seeing_fwhm_px"] == pytest.approx(spec.fwhm_px, rel=0.1)
    assert row["background_level"] == pytest.approx(spec.sky_counts, rel=0.01)
    expected_rms = np.sqrt(spec.sky_counts / spec.gain + (spec.read_noise_e / spec.gain) ** 2)
    assert row["background_rms"] == pytest.approx(expected_rms, rel=0.05)
    assert row["zero_point_ab"] == spec.zero_point
    # 5-sigma point source with optimal weighting: 5 * sqrt(noise variance * PSF effective area)
    optimal = 5.0 * expected_rms * np.sqrt(effective_area_px(spec.fwhm_px))
    assert row["limit_mag_5sigma"] == pytest.approx(spec.zero_point - 2.5 * np.log10(optimal), abs=0.3)
