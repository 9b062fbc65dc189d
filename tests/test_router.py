"""The one router: index-only, in memory or tiled, decided from the header before any pixel is read."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from astropy.io import fits

from skysift.catalog.records import Route, WcsKind
from skysift.io.fits import HeaderView, view_header
from skysift.pipeline import image as pipeline_image
from skysift.pipeline.image import process_image
from skysift.pipeline.router import choose_route, in_memory_pixel_limit, is_catalogued
from skysift.settings import Settings

SOLAR = {"CTYPE1": "HPLN-TAN", "CTYPE2": "HPLT-TAN", "CUNIT1": "arcsec", "CUNIT2": "arcsec", "CDELT1": 0.6,
         "CDELT2": 0.6, "CRPIX1": 1024.5, "CRPIX2": 1024.5, "CRVAL1": 0.0, "CRVAL2": 0.0,
         "DATE-OBS": "2026-01-01T00:00:00", "WAVELNTH": 171, "TELESCOP": "SDO/AIA"}


@pytest.fixture
def tight(tmp_path) -> Settings:
    """Settings whose in-memory limit is 100,000 pixels."""
    settings = Settings.load(home=tmp_path / "home", limits={"max_pixels": 100_000})
    assert in_memory_pixel_limit(settings) == 100_000
    return settings


def test_a_solar_image_is_index_only_whatever_was_asked(tight):
    solar = HeaderView((2048, 2048), WcsKind.HELIOPROJECTIVE)
    assert not is_catalogued(solar)
    for requested in (None, Route.LOCAL, Route.SMALL, Route.LARGE, "large"):
        assert choose_route(solar, tight, requested=requested) is Route.INDEX_ONLY
    assert choose_route(solar, tight, small_image_max_pixels=10) is Route.INDEX_ONLY


def test_in_memory_when_it_fits_tiled_when_not(tight):
    for kind in (WcsKind.CELESTIAL, WcsKind.NONE):  # without sky axes: a pixel catalog, routed the same
        assert choose_route(HeaderView((300, 300), kind), tight) is Route.LOCAL
        assert choose_route(HeaderView((400, 300), kind), tight) is Route.LARGE
    assert HeaderView((3, 200, 200), WcsKind.NONE).pixels == 120_000  # every axis counts for memory
    assert choose_route(HeaderView((3, 200, 200), WcsKind.NONE), tight) is Route.LARGE


def test_the_lambda_ceiling_and_requests(tight):
    small = HeaderView((100, 200), WcsKind.CELESTIAL)
    assert choose_route(small, tight, small_image_max_pixels=50_000) is Route.SMALL
    assert choose_route(small, tight, small_image_max_pixels=10_000) is Route.LARGE
    assert choose_route(small, tight, requested=Route.SMALL) is Route.SMALL  # the Detect step follows Inspect
    assert choose_route(small, tight, requested=Route.LARGE) is Route.LARGE  # the Batch job tiles whatever the size
    assert choose_route(small, tight, requested="index_only") is Route.INDEX_ONLY
    big = HeaderView((400, 400), WcsKind.CELESTIAL)
    assert choose_route(big, tight, requested=Route.LOCAL) is Route.LARGE  # beyond memory: tiles, never a failure
    assert choose_route(big, tight, requested=Route.SMALL, small_image_max_pixels=10**9) is Route.LARGE


def _forbid(monkeypatch, *names):
    """Make reading pixels an error: the router must have decided without them."""
    def refuse(*args, **kwargs):
        raise AssertionError("pixels read")

    for owner, name in names:
        monkeypatch.setattr(owner, name, refuse)


def test_an_index_only_image_never_decodes_its_pixels(tmp_path, monkeypatch):
    from skysift.io import fits as fitsio
    from skysift.measure import tiled

    path = tmp_path / "sun.fits"
    data = np.random.default_rng(1).normal(100.0, 5.0, (2048, 2048)).astype(np.float32)  # 16 MiB of pixels
    fits.PrimaryHDU(data, fits.Header(SOLAR)).writeto(path)
    del data
    _forbid(monkeypatch, (fitsio, "_decode_pixels"), (fitsio.Sections, "read"), (pipeline_image, "read_image"),
            (pipeline_image, "measure_tiled"), (tiled, "read_tile"))
    assert view_header(str(path)).wcs_kind is WcsKind.HELIOPROJECTIVE

    tracemalloc.start()
    try:
        result = process_image(str(path), Settings.load(home=tmp_path / "home"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.error is None, result.error
    assert (result.record.status, result.record.route, result.record.wcs_kind) == ("indexed", "index_only", "helioprojective")
    assert (result.record.nx, result.record.ny, result.record.wavelength_angstrom) == (2048, 2048, 171.0)
    assert "HPLN-TAN" in result.record.wcs_header
    assert peak < 4 * 2**20  # a quarter of the pixels' size: they were never held


def test_a_compressed_image_beyond_the_limit_goes_to_tiles_without_trying_memory(make_sky, tight, monkeypatch):
    path, _ = make_sky("rice.fits", size=512, compress=True)  # 262,144 pixels in a file of a few hundred kB
    _forbid(monkeypatch, (pipeline_image, "read_image"))
    result = process_image(str(path), tight)
    assert result.error is None, result.error
    assert (result.record.status, result.record.route) == ("ok", "large") and result.record.n_sources > 50
