"""The detection filter follows the header's seeing unless the settings fix it (issue 14, item 6).

``detection.filter_fwhm_px = None`` (the default) means: the seeing the header records
(``SEEING``, ``FWHM``, ``PSF_FWHM``; arcsec unless the card says pixels, as CASU's and the
DECam pipeline's do), else 3 px. ``images.filter_fwhm_px`` records what was used.
"""

from __future__ import annotations

import pytest
from astropy.io import fits

from skysift.core.psf import header_seeing
from skysift.io.fits import build_wcs
from skysift.measure.frame import detection_filter_fwhm
from skysift.pipeline.image import process_image
from skysift.settings import Settings


def header(*cards) -> fits.Header:
    return fits.Header(list(cards))


@pytest.mark.parametrize(("cards", "scale", "expected"), [
    ([("SEEING", 1.2, "FWHM, arcsec")], 0.4, (3.0, "SEEING")),
    ([("SEEING", 1.2)], 0.3, (4.0, "SEEING")),  # no unit said: arcsec, as NOAO's and DECam's SEEING
    ([("SEEING", 3.806582, "Average FWHM (pixels)")], 0.4, (3.806582, "SEEING")),  # CASU (UKIDSS, VISTA)
    ([("FWHM", 4.5, "[pixel] median FWHM")], None, (4.5, "FWHM")),  # DECam community pipeline
    ([("PSF_FWHM", 0.9, "[arcsec]")], 0.18, (5.0, "PSF_FWHM")),
    ([("SEEING", 1.5, "[arcsec]"), ("PIXSCALE", 0.5)], None, (3.0, "SEEING")),  # scale from the header
    ([("SEEING", 0.0), ("FWHM", 2.5, "pixels")], None, (2.5, "FWHM")),  # a placeholder is skipped
])
def test_header_seeing_in_pixels_from_the_keywords_surveys_write(cards, scale, expected):
    seeing = header_seeing(header(*cards), scale)
    assert seeing is not None and (seeing.fwhm_px, seeing.keyword) == (pytest.approx(expected[0]), expected[1])


@pytest.mark.parametrize(("cards", "scale"), [
    ([("SEEING", 1.2, "arcsec")], None),  # arcsec without any pixel scale: cannot be converted
    ([("SEEING", 45.0, "pixels")], 0.4),  # 45 px is no seeing: a wrong unit or a placeholder
    ([("SEEING", "bad")], 0.4),
    ([("OBJECT", "M13")], 0.4),
])
def test_a_header_seeing_that_cannot_be_used_is_none(cards, scale):
    assert header_seeing(header(*cards), scale) is None


def test_the_setting_wins_over_the_header_and_the_default_is_3_px():
    casu = header(("SEEING", 3.8, "Average FWHM (pixels)"))
    assert detection_filter_fwhm(casu, Settings.load(home="x"), build_wcs(casu)) == (pytest.approx(3.8), "SEEING")
    assert detection_filter_fwhm(casu, Settings.load(home="x", detection__filter_fwhm_px=2.0), build_wcs(casu)) == (2.0, "settings")
    m13 = header(("OBJECT", "M13"))
    assert detection_filter_fwhm(m13, Settings.load(home="x"), build_wcs(m13)) == (3.0, "default")


def test_images_row_records_the_filter_from_the_header_seeing(make_sky):
    good, _ = make_sky("good.fits", size=256, n_stars=40, fwhm_px=3.0)  # SEEING 1.2" at 0.4"/px
    poor, _ = make_sky("poor.fits", size=256, n_stars=40, fwhm_px=6.0)  # SEEING 2.4"
    settings = Settings.load(home="unused")

    rows = {name: process_image(str(path), settings).record.to_row() for name, path in (("good", good), ("poor", poor))}
    fixed = process_image(str(poor), Settings.load(home="unused", detection__filter_fwhm_px=3.0)).record.to_row()

    assert rows["good"]["filter_fwhm_px"] == pytest.approx(3.0)
    assert rows["poor"]["filter_fwhm_px"] == pytest.approx(6.0)
    assert fixed["filter_fwhm_px"] == 3.0
    # a filter matched to the seeing is more sensitive to the same sky than a mismatched one
    assert rows["poor"]["n_sources"] >= fixed["n_sources"]
    assert rows["poor"]["settings_hash"] != fixed["settings_hash"]


def test_the_seeing_fits_analytic_derivatives_are_the_models():
    """The Moffat fit's Jacobian (analytic, for speed) agrees with finite differences."""
    import numpy as np

    from skysift.core import psf

    yy, xx = np.mgrid[-7:8, -7:8].astype(np.float64)
    stamp = np.random.default_rng(1).normal(size=(15, 15))
    for params in ([50.0, 0.3, -0.2, 2.1, 3.4, 1.2], [800.0, -1.5, 1.1, 0.9, 1.7, -3.0]):
        params = np.array(params)
        numeric = np.empty((stamp.size, params.size))
        for k in range(params.size):  # central differences
            step = np.zeros_like(params)
            step[k] = 1e-6 * max(1.0, abs(params[k]))
            numeric[:, k] = (psf._moffat_residuals(params + step, xx, yy, stamp)
                             - psf._moffat_residuals(params - step, xx, yy, stamp)) / (2 * step[k])
        np.testing.assert_allclose(psf._moffat_jacobian(params, xx, yy, stamp), numeric, rtol=1e-5, atol=1e-5)
