"""Header zero-point conventions give the right AB magnitudes."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from skysift.calibration import calibrate, zero_point


def header(**cards) -> fits.Header:
    h = fits.Header()
    for key, value in cards.items():
        h[key] = value
    return h


def test_magzero():
    zp = zero_point(header(MAGZERO=27.5))
    assert zp.zp_ab == 27.5 and zp.source == "MAGZERO"


def test_sdss_nanomaggies_per_count():
    zp = zero_point(header(NMGY=0.005))
    # one count = 0.005 nanomaggies = AB 22.5 - 2.5 log10(0.005)
    assert zp.zp_ab == pytest.approx(22.5 + 5.752574989, abs=1e-6)


def test_hst_photflam_count_rate_and_counts():
    rate = zero_point(header(PHOTFLAM=1.5e-19, PHOTPLAM=5000.0, BUNIT="ELECTRONS/S"))
    # STScI: ABMAG_ZPT = -2.5 log10(PHOTFLAM) - 5 log10(PHOTPLAM) - 2.408
    assert rate.zp_ab == pytest.approx(-2.5 * np.log10(1.5e-19) - 5 * np.log10(5000.0) - 2.408)
    counts = zero_point(header(PHOTFLAM=1.5e-19, PHOTPLAM=5000.0, BUNIT="ELECTRONS"), exptime_s=100.0)
    assert counts.zp_ab == pytest.approx(rate.zp_ab + 5.0)


def test_no_zero_point_gives_null_magnitudes():
    assert zero_point(header(EXPTIME=30.0)) is None
    out = calibrate(np.array([100.0]), np.array([10.0]), None)
    assert np.isnan(out["mag_ab"]).all() and np.isnan(out["flux_ujy"]).all()


def test_ab_magnitude_of_known_flux():
    zp = zero_point(header(MAGZERO=23.9))  # one count = 1 uJy
    out = calibrate(np.array([100.0, -5.0]), np.array([1.0, 1.0]), zp)
    assert out["flux_ujy"][0] == pytest.approx(100.0) and out["mag_ab"][0] == pytest.approx(18.9)
    assert out["mag_ab_err"][0] == pytest.approx(1.0857 / 100.0, rel=1e-3)
    assert np.isnan(out["mag_ab"][1])
