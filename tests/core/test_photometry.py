"""skysift.core.photometry on single sources whose fluxes, sizes and centres are known.

Two sources with analytic answers, on zero background:

* a flat-topped disc (surface brightness ``SB``, radius ``R``): a circle that stays inside the
  flat top covers only pixels of value ``SB``, so SEP's exact pixel/circle overlap measures
  ``SB pi r^2`` to float precision; one enclosing the disc measures all of it. Its first moment
  is ``2 R / 3`` and its second moments give ``a = b = R / 2`` (Kron radius 4/3 in those units),
  its half-light radius is ``R / sqrt 2``.
* a Gaussian of total flux ``F`` and width ``s``, integrated over pixels (exactly, with erf):
  its second moment is ``s^2 + 1/12`` (the pixel's box), its first moment ``sqrt(pi/2)`` of that
  width, and it is symmetric about its centre, which a windowed centroid finds exactly.

The sizes are measured on pixels taken as evenly lit, which biases them slightly for a Gaussian
(a 3 px one: the Kron radius +0.4%, the half-light radius +0.9%): those tolerances say so.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import erf

from skysift.core import flags as F
from skysift.core.photometry import HALF_PI, measure, sep_ellipses
from skysift.settings import PhotometrySettings

SETTINGS = PhotometrySettings()  # circles of 3, 6 and 10 px; Kron factor 2.5, at least 3.5 (a, b)
SHAPE = (64, 64)
OBJECT_DTYPE = [("x", float), ("y", float), ("a", float), ("b", float), ("theta", float), ("xpeak", int),
                ("ypeak", int), ("errx2", float), ("erry2", float), ("peak", float), ("npix", int), ("flag", np.int16)]


def one_object(x: float, y: float, a: float, *, peak: float = 0.0) -> np.ndarray:
    """The fields of SEP's objects that :func:`measure` reads, for one round source."""
    return np.array([(x, y, a, a, 0.0, round(x), round(y), 0.0, 0.0, peak, 0, 0)], dtype=OBJECT_DTYPE)


def flat_disc(x0: float, y0: float, radius: float, surface_brightness: float, oversample: int = 16) -> np.ndarray:
    """A disc of uniform surface brightness, each pixel holding the light of the part it covers."""
    sub = (np.arange(oversample) + 0.5) / oversample - 0.5
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]].astype(np.float64)
    covered = np.zeros(SHAPE)
    for dy in sub:
        for dx in sub:
            covered += (xx + dx - x0) ** 2 + (yy + dy - y0) ** 2 <= radius**2
    return (surface_brightness * covered / oversample**2).astype(np.float32)


def pixel_gaussian(x0: float, y0: float, sigma: float, flux: float) -> np.ndarray:
    """A circular Gaussian of total ``flux`` integrated exactly over each pixel."""
    def edges(centre: float, n: int) -> np.ndarray:
        cuts = (np.arange(n + 1) - 0.5 - centre) / (math.sqrt(2.0) * sigma)
        return 0.5 * np.diff(erf(cuts))

    return (flux * np.outer(edges(y0, SHAPE[0]), edges(x0, SHAPE[1]))).astype(np.float32)


def unit_noise() -> np.ndarray:
    return np.ones(SHAPE, np.float32)


# -- a flat-topped disc: fluxes exact ------------------------------------------------------------
DISC = (31.3, 32.6, 12.0, 100.0)  # x, y, R (px), surface brightness (counts per pixel)


@pytest.fixture(scope="module")
def disc() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    x0, y0, radius, _ = DISC
    data = flat_disc(*DISC)
    # the detection's barycentre a little off the centre: the windowed centroid moves it back
    return data, measure(data, one_object(x0 - 0.3, y0 + 0.3, radius / 2), unit_noise(), None, SETTINGS)


def test_circles_inside_a_flat_top_measure_its_surface_brightness_times_their_area(disc):
    _, columns = disc
    sb = DISC[3]
    for k, radius in enumerate(SETTINGS.aperture_radii_px, start=1):
        assert radius + math.sqrt(2) < DISC[2]  # every pixel the circle touches is inside the disc
        assert columns[f"flux_aper_{k}"][0] == pytest.approx(sb * math.pi * radius**2, rel=1e-7), radius


def test_the_kron_aperture_holds_the_whole_disc(disc):
    """3.5 a = 1.75 R: the Kron aperture encloses the disc, so the AUTO flux is all of it."""
    data, columns = disc
    assert columns["flux"][0] == pytest.approx(float(data.sum(dtype=np.float64)), rel=1e-6)
    assert columns["flux"][0] == pytest.approx(DISC[3] * math.pi * DISC[2] ** 2, rel=1e-4)


def test_a_flat_discs_kron_and_half_light_radii(disc):
    _, columns = disc
    radius = DISC[2]
    assert columns["kron_radius"][0] == pytest.approx(4.0 / 3.0, rel=0.005)  # (2 R / 3) / (R / 2)
    assert columns["half_light_radius_px"][0] == pytest.approx(radius / math.sqrt(2), rel=0.005)
    assert columns["fwhm_px"][0] == 2.0 * columns["half_light_radius_px"][0]


def test_errors_are_the_sky_noise_over_the_area_measured(disc):
    """A constant 1-sigma map: a circle's error is sigma sqrt(pi r^2); SNR is flux / error."""
    _, columns = disc
    for k, radius in enumerate(SETTINGS.aperture_radii_px, start=1):
        assert columns[f"flux_aper_{k}_err"][0] == pytest.approx(math.sqrt(math.pi * radius**2), rel=1e-7)
    assert columns["snr"][0] == pytest.approx(columns["flux"][0] / columns["flux_err"][0], rel=1e-6)


def test_a_gain_adds_the_sources_own_poisson_noise():
    x0, y0, radius, _ = DISC
    data = flat_disc(*DISC)
    gain, sigma = 4.0, 2.0
    columns = measure(data, one_object(x0, y0, radius / 2), np.full(SHAPE, sigma, np.float32), None, SETTINGS,
                      gain=gain)
    for k, r in enumerate(SETTINGS.aperture_radii_px, start=1):
        flux = columns[f"flux_aper_{k}"][0]
        assert columns[f"flux_aper_{k}_err"][0] == pytest.approx(math.sqrt(sigma**2 * math.pi * r**2 + flux / gain),
                                                                 rel=1e-6)


# -- a Gaussian: the centroid exact, Kron and sizes as the profile says ---------------------------
GAUSSIAN_SIGMA = 3.0
GAUSSIAN_WIDTH = math.sqrt(GAUSSIAN_SIGMA**2 + 1.0 / 12.0)  # the pixel-integrated profile's


@pytest.mark.parametrize(("x0", "y0"), [(30.3, 31.7), (32.0, 32.0), (29.5, 33.25)])
def test_a_windowed_centroid_finds_a_symmetric_source_at_its_sub_pixel_position(x0, y0):
    data = pixel_gaussian(x0, y0, 2.0, 1e4)
    columns = measure(data, one_object(x0 + 0.3, y0 - 0.3, 2.0), unit_noise(), None, SETTINGS)
    assert (columns["x"][0], columns["y"][0]) == (pytest.approx(x0, abs=1e-5), pytest.approx(y0, abs=1e-5))


def test_a_gaussians_kron_radius_flux_and_fwhm():
    """Kron radius sqrt(pi/2) (first moment over width); the aperture is then the minimum,
    3.5 widths, holding 1 - exp(-3.5^2 / 2) of the flux; half of that within the half-light
    radius, twice which is the Gaussian's FWHM, 2 sqrt(2 ln 2) widths."""
    flux = 1e4
    data = pixel_gaussian(31.3, 32.6, GAUSSIAN_SIGMA, flux)
    columns = measure(data, one_object(31.3, 32.6, GAUSSIAN_WIDTH), unit_noise(), None, SETTINGS)
    assert SETTINGS.kron_factor * math.sqrt(math.pi / 2) < SETTINGS.kron_min_radius == 3.5
    held = 1.0 - math.exp(-(3.5**2) / 2.0)
    assert columns["kron_radius"][0] == pytest.approx(math.sqrt(math.pi / 2), rel=0.01)
    assert columns["flux"][0] == pytest.approx(flux * held, rel=1e-3)
    half_light = GAUSSIAN_WIDTH * math.sqrt(-2.0 * math.log(1.0 - held / 2.0))
    assert columns["half_light_radius_px"][0] == pytest.approx(half_light, rel=0.015)
    assert columns["fwhm_px"][0] == pytest.approx(2.0 * math.sqrt(2.0 * math.log(2.0)) * GAUSSIAN_WIDTH, rel=0.015)


# -- flags -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("x", "near"), [(2.0, True), (3.0, False), (60.0, False), (61.0, True)])
def test_near_edge_is_within_the_margin_of_the_first_or_last_pixel_centre(x, near):
    data = pixel_gaussian(x, 32.0, 1.0, 1e3)
    columns = measure(data, one_object(x, 32.0, 1.0), unit_noise(), None, SETTINGS, edge_margin_px=3.0)
    assert bool(columns["flags"][0] & F.NEAR_EDGE) is near


@pytest.mark.parametrize(("saturation", "saturated"), [(1100.0, True), (1100.5, False), (None, False)])
def test_saturated_when_the_peak_with_the_sky_reaches_the_level(saturation, saturated):
    """The peak is measured above the sky (1000 + 100 of sky = 1100 raw counts)."""
    data = pixel_gaussian(32.0, 32.0, 1.5, 1e4)
    columns = measure(data, one_object(32.0, 32.0, 1.5, peak=1000.0), unit_noise(), None, SETTINGS,
                      background_level=100.0, saturation_level=saturation)
    assert bool(columns["flags"][0] & F.SATURATED) is saturated


def test_no_objects_give_every_column_empty():
    columns = measure(np.zeros(SHAPE, np.float32), one_object(1.0, 1.0, 1.0)[:0], unit_noise(), None, SETTINGS)
    assert set(columns) >= {"x", "flux", "flux_aper_3", "flux_aper_3_err", "snr", "flags", "npix"}
    assert all(len(values) == 0 for values in columns.values())
    assert columns["flags"].dtype == np.int32


# -- shapes SEP accepts ----------------------------------------------------------------------------
def test_sep_ellipses_clip_theta_order_the_axes_and_replace_degenerate_shapes():
    a = np.array([3.0, 2.0, 2.0, np.nan, 0.0, 2.0])
    b = np.array([1.0, 2.0 + 1e-12, 1.0, 1.0, 1.0, 1.0])
    theta = np.array([np.float32(np.pi / 2), 0.5, -4.0, 0.0, 0.0, np.inf])
    ea, eb, etheta, degenerate = sep_ellipses(a, b, theta)
    assert degenerate.tolist() == [False, False, False, True, True, True]
    assert etheta[0] == HALF_PI < float(np.float32(np.pi / 2))  # SEP issue #110: float32(pi/2) > pi/2
    assert etheta[2] == -HALF_PI and etheta[1] == 0.5
    assert eb[1] == ea[1] == 2.0  # b > a by rounding only
    assert ea[3:].tolist() == eb[3:].tolist() == [1.0, 1.0, 1.0] and etheta[3:].tolist() == [0.0, 0.0, 0.0]
    assert (ea[:3].tolist(), eb[0], eb[2]) == ([3.0, 2.0, 2.0], 1.0, 1.0)


def test_a_degenerate_shape_is_measured_in_a_circle_and_flagged_singular():
    data = pixel_gaussian(32.0, 32.0, 1.0, 1e3)
    objects = one_object(32.0, 32.0, 1.0)
    objects["a"] = np.nan
    columns = measure(data, objects, unit_noise(), None, SETTINGS)
    assert columns["flags"][0] & F.SINGULAR
    assert columns["flux_aper_3"][0] == pytest.approx(1e3, rel=1e-4)  # measured all the same
