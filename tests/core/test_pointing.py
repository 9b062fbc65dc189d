"""A header's sky disc (core.pointing) holds the image astropy's WCS places, anywhere on the sky."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from astropy.coordinates import angular_separation
from astropy.io import fits
from astropy.wcs import WCS
from hypothesis import given, settings
from hypothesis import strategies as st

from skysift.core.pointing import SkyDisc, header_disc, overlapping


def _tan_header(ra, dec, nx, ny, scale_arcsec, angle_deg, crpix_shift, flip) -> fits.Header:
    c, s = np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))
    scale = scale_arcsec / 3600
    cd = scale * np.array([[-c * flip, s], [s * flip, c]])
    return fits.Header({"NAXIS": 2, "NAXIS1": nx, "NAXIS2": ny, "CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN",
                        "CRVAL1": ra, "CRVAL2": dec, "CRPIX1": nx / 2 + crpix_shift[0], "CRPIX2": ny / 2 + crpix_shift[1],
                        "CD1_1": cd[0, 0], "CD1_2": cd[0, 1], "CD2_1": cd[1, 0], "CD2_2": cd[1, 1]})


def _edge_points(header) -> tuple[np.ndarray, np.ndarray]:
    """Sky positions (deg) of points along the image's edges, as astropy's WCS places them."""
    nx, ny = header["NAXIS1"], header["NAXIS2"]
    t = np.linspace(0, 1, 25)
    x = np.concatenate([t * nx, t * nx, np.zeros_like(t), np.full_like(t, nx)]) - 0.5
    y = np.concatenate([np.zeros_like(t), np.full_like(t, ny), t * ny, t * ny]) - 0.5
    return WCS(header).all_pix2world(x, y, 0)


@settings(deadline=None, max_examples=200)
@given(ra=st.floats(0, 360, exclude_max=True), dec=st.floats(-89.9, 89.9), nx=st.integers(16, 8192), ny=st.integers(16, 8192),
       scale=st.floats(0.05, 30), angle=st.floats(-180, 180), shift=st.tuples(st.floats(-3000, 3000), st.floats(-3000, 3000)),
       flip=st.sampled_from([1, -1]))
def test_the_disc_holds_every_edge_point_astropy_places(ra, dec, nx, ny, scale, angle, shift, flip):
    header = _tan_header(ra, dec, nx, ny, scale, angle, shift, flip)
    disc = header_disc(header)
    if disc is None:  # only for a field so large that its disc would not be under 90 deg
        assert max(nx, ny) * scale / 3600 > 20
        return
    ra_edge, dec_edge = _edge_points(header)
    distance = np.degrees(angular_separation(np.radians(disc.ra_deg), np.radians(disc.dec_deg),
                                             np.radians(ra_edge), np.radians(dec_edge)))
    assert distance.max() <= disc.radius_deg
    # and the disc is not much larger than the image: its centre is the image's, its radius the half diagonal
    half_diagonal = np.hypot(nx, ny) / 2 * scale / 3600
    assert disc.radius_deg <= 1.1 * half_diagonal + 1e-9


def test_headers_without_usable_sky_axes_have_no_disc():
    good = _tan_header(10, 20, 100, 100, 1.0, 0, (0, 0), 1)
    assert header_disc(good) is not None
    for change in ({"CTYPE1": "HPLN-TAN", "CTYPE2": "HPLT-TAN"}, {"CTYPE1": "LINEAR"}, {"CUNIT1": "arcsec"},
                   {"CRVAL1": "ten"}, {"NAXIS1": None}, {"CD1_1": True}):
        header = good.copy()
        for key, value in change.items():
            if value is None:
                del header[key]
            else:
                header[key] = value
        assert header_disc(header) is None, change
    cdelt = good.copy()
    for key in ("CD1_1", "CD1_2", "CD2_1", "CD2_2"):
        del cdelt[key]
    cdelt["CDELT1"], cdelt["CDELT2"] = -1 / 3600, 1 / 3600
    assert header_disc(cdelt).radius_deg == pytest.approx(header_disc(good).radius_deg)
    compressed = fits.Header({**{k: v for k, v in good.items() if not k.startswith("NAXIS")},
                              "NAXIS1": 8, "NAXIS2": 100, "ZIMAGE": True, "ZNAXIS1": 100, "ZNAXIS2": 100})
    assert header_disc(compressed) == header_disc(good)  # a tile-compressed image's own axes


@settings(deadline=None, max_examples=100)
@given(st.lists(st.one_of(st.none(), st.tuples(st.sampled_from(["equatorial", "galactic"]), st.floats(0, 359.99),
                                               st.floats(-89, 89), st.floats(0.01, 5))), max_size=25))
def test_overlapping_finds_the_pairs_a_brute_force_finds(raw):
    discs = [None if item is None else SkyDisc(*item) for item in raw]
    expected = np.zeros(len(discs), dtype=bool)
    for i, j in itertools.combinations(range(len(discs)), 2):
        a, b = discs[i], discs[j]
        if a is None or b is None or a.frame != b.frame:
            continue
        distance = np.degrees(angular_separation(*np.radians([a.ra_deg, a.dec_deg, b.ra_deg, b.dec_deg])))
        if distance <= a.radius_deg + b.radius_deg - 1e-9:
            expected[i] = expected[j] = True
        elif distance <= a.radius_deg + b.radius_deg + 1e-9:  # on the boundary: either answer
            expected[i] |= overlapping(discs)[i]
            expected[j] |= overlapping(discs)[j]
    np.testing.assert_array_equal(overlapping(discs), expected)


_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63 - 1), st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=12),
                    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([0, 0.0, 1e308, -1e308, 1e-320]))


@settings(deadline=None, max_examples=300)
@given(changes=st.dictionaries(st.sampled_from(["NAXIS1", "NAXIS2", "CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CD1_1",
                                                "CD1_2", "CD2_1", "CD2_2", "CDELT1", "CDELT2", "PC1_1", "PC2_1",
                                                "CTYPE1", "CTYPE2", "CUNIT1", "ZIMAGE", "ZNAXIS1"]), _VALUES, max_size=6))
def test_absurd_keywords_give_no_disc_or_a_finite_one_never_an_error(changes):
    """Hostile headers (strings for numbers, zero or overflowing scales, no axes) never raise:
    a header gives None or a disc whose numbers are finite and whose radius is under 90 deg."""
    header = _tan_header(10, 20, 100, 100, 1.0, 30, (5, -5), 1)
    for key, value in changes.items():
        if value is None:
            header.remove(key, ignore_missing=True)
        else:
            header[key] = value
    disc = header_disc(header)
    if disc is not None:
        assert all(np.isfinite([disc.ra_deg, disc.dec_deg, disc.radius_deg]))
        assert 0 <= disc.ra_deg < 360 and -90 <= disc.dec_deg <= 90 and 0 < disc.radius_deg < 90
