"""Header zero points in each survey's convention give the right AB magnitudes (issue 14 item 4).

Each convention is read from a real header (astroquery's UKIDSS test image) or one shaped
as the survey writes it (keywords, units and which HDU carries them), through
:func:`skysift.io.fits.inspect_with_header`, which merges the primary header under the
image extension's as it does for every file.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from skysift.core.calibration import WFCAM_AB_MINUS_VEGA, calibrate, zero_point
from skysift.core.metadata import exposure_seconds
from skysift.io.fits import inspect_with_header
from skysift.pipeline.image import process_image

UKIDSS = Path(str(importlib.resources.files("astroquery").joinpath("ukidss", "tests", "data", "image.fits")))


def header(**cards) -> fits.Header:
    h = fits.Header()
    for key, value in cards.items():
        h[key] = value
    return h


def mef(path, primary: dict, extension: dict, data=None):
    """A two-HDU file (empty primary, one image extension) with these cards, as CASU and HST write them."""
    image = fits.ImageHDU(np.zeros((8, 8), np.float32) if data is None else data, header(**extension))
    fits.HDUList([fits.PrimaryHDU(header=header(**primary)), image]).writeto(path)
    return path


def test_ukidss_casu_zero_point_is_vega_per_second_with_extinction():
    """astroquery's real UKIDSS (WFCAM K) image: MAGZPT 24.053 in the extension is Vega for
    one count per second at airmass 1; EXP_TIME (10 s), the airmass (AMSTART, AMEND 1.067)
    and FILTER are in the primary header. Taken as AB for counts it was 4.4 mag too bright."""
    info, _ = inspect_with_header(str(UKIDSS), 1)
    expected = 24.053 + 2.5 * np.log10(10.0) - 0.05 * (1.067 - 1.0) + 1.900
    assert info.exptime_s == 10.0
    assert info.zero_point_ab == pytest.approx(expected, abs=1e-6)
    assert info.zero_point_ab - 24.053 == pytest.approx(4.4, abs=0.01)
    assert "CASU WFCAM K" in info.zero_point_source and "AB - Vega 1.900" in info.zero_point_source


def test_ukidss_catalog_magnitudes_use_the_casu_zero_point(settings):
    result = process_image(str(UKIDSS), settings, hdu=1)
    assert result.ok
    row, sources = result.record.to_row(), result.sources.to_pandas()
    assert row["zero_point_ab"] == pytest.approx(28.44965, abs=1e-5)
    assert row["zero_point_source"].startswith("MAGZPT (CASU WFCAM K")
    good = sources["flux"] > 0
    assert good.sum() > 3
    np.testing.assert_allclose(sources["mag_ab"][good], 28.44965 - 2.5 * np.log10(sources["flux"][good]), atol=1e-4)


@pytest.mark.parametrize(("band", "ab_minus_vega"), sorted(WFCAM_AB_MINUS_VEGA.items()))
def test_casu_wfcam_bands_get_hewett_vega_to_ab_offsets(band, ab_minus_vega):
    zp = zero_point(header(INSTRUME="WFCAM", FILTER=band, MAGZPT=25.0, EXTINCT=0.05, EXP_TIME=5.0, AIRMASS=1.2))
    assert zp.zp_ab == pytest.approx(25.0 + 2.5 * np.log10(5.0) - 0.05 * 0.2 + ab_minus_vega)


@pytest.mark.parametrize(("cards", "reason"), [
    ({"INSTRUME": "WFCAM", "FILTER": "H2"}, "no AB - Vega offset"),  # a narrow band
    ({"INSTRUME": "VIRCAM", "FILTER": "Ks"}, "no AB - Vega offset"),  # VISTA: another camera's system
    ({"INSTRUME": "WFCAM", "FILTER": "K", "EXP_TIME": None}, "no exposure time"),
])
def test_casu_zero_point_that_cannot_be_completed_is_null_with_the_reason(cards, reason):
    cards = {"MAGZPT": 24.0, "EXTINCT": 0.05, "EXP_TIME": 10.0, **cards}
    zp = zero_point(header(**{k: v for k, v in cards.items() if v is not None}))
    assert zp.zp_ab is None and reason in zp.source
    assert np.isnan(calibrate(np.array([100.0]), np.array([1.0]), zp)["mag_ab"]).all()


def test_casu_without_airmass_has_no_extinction_term_and_says_so():
    zp = zero_point(header(INSTRUME="WFCAM", FILTER="J", MAGZPT=25.0, EXTINCT=0.05, EXP_TIME=10.0))
    assert zp.zp_ab == pytest.approx(25.0 + 2.5 + 0.938)
    assert "airmass unknown" in zp.source


def test_magzpt_without_casu_marks_is_an_ab_zero_point_for_counts():
    assert zero_point(header(MAGZPT=27.0, EXPTIME=30.0)).zp_ab == 27.0


@pytest.mark.parametrize("key", ["MAGZERO", "MAGZP", "PHOTZP"])
def test_ab_zero_points_are_for_the_image_units_whatever_the_exposure(key):
    # DES (MAGZERO), ZTF (MAGZP for the image in DN), ESO Phase 3 (PHOTZP with PHOTSYS AB)
    zp = zero_point(header(**{key: 27.5, "EXPTIME": 90.0, "PHOTSYS": "AB"}))
    assert zp.zp_ab == 27.5 and zp.source == key


def test_eso_phase3_vega_zero_point_is_null():
    zp = zero_point(header(PHOTZP=23.9, PHOTSYS="VEGA"))
    assert zp.zp_ab is None and "VEGA" in zp.source


def test_sdss_frame_in_nanomaggies_has_zero_point_22_5():
    # an SDSS DR8+ frame (HDU 0): calibrated to nanomaggies; NMGY only undoes that calibration
    zp = zero_point(header(BUNIT="nanomaggy", NMGY=0.00478, EXPTIME=53.907456, FILTER="r"))
    assert zp.zp_ab == 22.5


def test_sdss_nanomaggies_per_count_calibrate_an_image_in_counts():
    zp = zero_point(header(NMGY=0.005, BUNIT="counts"))
    # one count = 0.005 nanomaggies = AB 22.5 - 2.5 log10(0.005)
    assert zp.zp_ab == pytest.approx(22.5 + 5.752574989, abs=1e-6)
    assert zero_point(header(NMGY=0.005)).zp_ab is None  # counts or nanomaggies? not said


def test_hst_photflam_count_rate_and_counts():
    rate = zero_point(header(PHOTFLAM=1.5e-19, PHOTPLAM=5000.0, BUNIT="ELECTRONS/S"))
    # STScI: ABMAG_ZPT = -2.5 log10(PHOTFLAM) - 5 log10(PHOTPLAM) - 2.408
    assert rate.zp_ab == pytest.approx(-2.5 * np.log10(1.5e-19) - 5 * np.log10(5000.0) - 2.408)
    counts = zero_point(header(PHOTFLAM=1.5e-19, PHOTPLAM=5000.0, BUNIT="ELECTRONS"), exptime_s=100.0)
    assert counts.zp_ab == pytest.approx(rate.zp_ab + 5.0)
    assert zero_point(header(PHOTFLAM=1.5e-19, PHOTPLAM=5000.0)).zp_ab is None  # rate or counts? not said


def test_hst_flt_counts_image_takes_exptime_from_the_primary_header(tmp_path):
    """A WFC3/UVIS flt: EXPTIME in the primary header, PHOTFLAM/PHOTPLAM and BUNIT ELECTRONS in SCI."""
    path = mef(tmp_path / "flt.fits", {"TELESCOP": "HST", "INSTRUME": "WFC3", "EXPTIME": 700.0, "FILTER": "F606W"},
               {"EXTNAME": "SCI", "BUNIT": "ELECTRONS", "PHOTFLAM": 1.1e-19, "PHOTPLAM": 5889.0})
    info, _ = inspect_with_header(str(path), 1)
    rate_zp = -2.5 * np.log10(1.1e-19) - 5 * np.log10(5889.0) - 2.408
    assert info.exptime_s == 700.0
    assert info.zero_point_ab == pytest.approx(rate_zp + 2.5 * np.log10(700.0))


def test_hst_drizzled_rate_image_needs_no_exposure(tmp_path):
    """An ACS drz: PHOTFLAM/PHOTPLAM in the primary header, the SCI extension in ELECTRONS/S."""
    path = mef(tmp_path / "drz.fits", {"TELESCOP": "HST", "INSTRUME": "ACS", "EXPTIME": 2028.0,
                                       "PHOTFLAM": 7.07e-20, "PHOTPLAM": 5921.0},
               {"EXTNAME": "SCI", "BUNIT": "ELECTRONS/S"})
    info, _ = inspect_with_header(str(path), 1)
    assert info.zero_point_ab == pytest.approx(-2.5 * np.log10(7.07e-20) - 5 * np.log10(5921.0) - 2.408)


@pytest.mark.parametrize(("cards", "seconds"), [
    ({"EXPTIME": 30.0, "EXP_TIME": 10.0}, 30.0),
    ({"EXP_TIME": 10.0}, 10.0),  # CASU
    ({"EXPOSURE": 12.5}, 12.5),
    ({"ITIME": 2.0, "COADDS": 10}, 20.0),  # Keck NIRC2: per coadd, coadds summed
    ({"ITIME": 2.0}, 2.0),
    ({"EXPTIME": 0.0, "EXPOSURE": 5.0}, 5.0),  # zero is no exposure time
    ({"EXPTIME": "unknown"}, None),
    ({}, None),
])
def test_exposure_keywords(cards, seconds):
    assert exposure_seconds(header(**cards)) == seconds


def test_exposure_in_the_extension_overrides_the_primary(tmp_path):
    path = mef(tmp_path / "ext.fits", {"EXPTIME": 100.0}, {"EXPTIME": 25.0, "MAGZERO": 25.0})
    assert inspect_with_header(str(path), 1)[0].exptime_s == 25.0


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
