"""Per-source measurements: windowed positions, Kron (AUTO) and aperture fluxes, sizes.

All fluxes are in the image's units (counts) above the background, with 1-sigma
errors from the background RMS map plus, when the gain (e-/count) is known, the
sources' own Poisson noise. Positions are 0-based pixel coordinates (the centre of
the first pixel is 0.0), refined with SExtractor's windowed centroid (XWIN/YWIN),
which is far less noisy than the isophotal barycentre for faint sources.

The windowed centroid iterates towards the light-weighted centre of a Gaussian window
whose size comes from the half-light radius. Beside a brighter neighbour the radius,
hence the window, is inflated by the neighbour's light, and the window walks onto the
neighbour's peak: on m13 and astroquery's UKIDSS and MAGPIS test images 11, 2 and 26
pairs of distinct SEP detections (up to 17 px apart) ended within 1.5 px of each other,
one star listed twice (57 pairs on a 4096^2 synthetic sky). A windowed centroid is
therefore kept only while it stays on its own source (:func:`stays_on_source`);
otherwise the isophotal barycentre is the position.

Neighbours are corrected as Source Extractor's ``MASK_TYPE CORRECT`` corrects them, given
the segmentation map of the detections: the Kron radius's first moment skips other
sources' pixels, and the Kron, circular-aperture and half-light sums and the windowed
centroid take, for each of those pixels, the pixel opposite it through the source's
centre (:func:`corrected_cutout`). Without this a faint star 7 px from a bright one was
measured 2 mag too bright, and half of the stars with a neighbour within 8 px were off by
more than 10% (Source Extractor: a third). Where neighbours covered more than 10% of the
area, the source is flagged APER_CONTAMINATED, Source Extractor's flag 1. The half-light
radius is measured above the local pedestal (:func:`_local_pedestal`): in a globular
cluster the unresolved stars' light under every star made its size a galaxy's.

Source Extractor corrects only what it detected. Most stars with a neighbour within 8 px
that it (and skysift) measured more than 10% off had a fainter companion inside their own
isophote, which makes no peak of its own in the filtered image and is never split off
(151 of 195 on a 1024^2 test sky). Detection finds such companions by the asymmetry they
leave (:func:`skysift.core.detection.companion_pixels`); their pixels are corrected here
like another source's, mirrored through the source's peak (:func:`~skysift.core.detection.local_peak`),
not its barycentre, which the companion pulls towards itself.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np
import sep
from scipy.spatial import cKDTree

from skysift.core import flags as F
from skysift.core.compiled import loops as _loops  # None without a compiler: NumPy's functions
from skysift.core.detection import CENTRE_SEARCH_PX, local_peak
from skysift.core.shelves import shelf_layout
from skysift.settings import PhotometrySettings

__all__ = [
    "CONTAMINATED_AREA_FRACTION",
    "DEGENERATE_AXIS_PX",
    "GAUSSIAN_R50_TO_FWHM",
    "HALF_LIGHT_ITERATIONS",
    "HALF_LIGHT_TOLERANCE_PX",
    "HALF_PI",
    "KRON_INTEGRATION_RADIUS",
    "KRON_MAX_IMAGE_FRACTION",
    "MOSAIC_MAX_PIXELS",
    "PEDESTAL_ANNULUS_PX",
    "PEDESTAL_INNER_SCALE",
    "PEDESTAL_MIN_PIXELS",
    "PEDESTAL_MIN_SIGMA",
    "WINDOW_NSIG",
    "Cutout",
    "corrected_cutout",
    "measure",
    "reach_px",
    "sep_ellipses",
    "stays_on_source",
]

GAUSSIAN_R50_TO_FWHM = 2.0  # a Gaussian's half-light radius is half its FWHM
HALF_PI = np.pi / 2.0  # in float64: SEP's aperture functions accept theta in [-HALF_PI, HALF_PI]
#: Semi-axes (pixels) of the circle that measures a source whose shape is degenerate.
DEGENERATE_AXIS_PX = 1.0
#: SExtractor takes the Kron radius's first moment out to 6 isophotal radii (KRON_NSIG), so
#: r_kron <= 6 in units of a and b, and the Kron aperture at most kron_factor * 6 of them.
KRON_INTEGRATION_RADIUS = 6.0
#: ... and a Kron aperture's semi-major axis is at most this fraction of the image's smaller side.
KRON_MAX_IMAGE_FRACTION = 0.25
#: A source with more than this fraction of the pixels of its first-moment ellipse (6 a, b) or
#: of its Kron aperture in other sources is APER_CONTAMINATED (SExtractor's CROWD_THRESHOLD).
CONTAMINATED_AREA_FRACTION = 0.1
#: A windowed centroid weighs the pixels within this many window sigmas (SEP, SExtractor).
WINDOW_NSIG = 4.0
#: Width (pixels) of the annulus around a Kron aperture whose pixels of no source give the
#: local pedestal the half-light radius is measured above, and the fewest such pixels used.
PEDESTAL_ANNULUS_PX = 8.0
#: ... starting this many Kron aperture radii out, beyond most of the source's own wings
#: (at 1.0, 15% of the bench sky's galaxies found a significant pedestal in them; at 1.5, 1%)
PEDESTAL_INNER_SCALE = 1.5
PEDESTAL_MIN_PIXELS = 30
PEDESTAL_MIN_SIGMA = 3.0
#: Fixed-point iterations of the half-light radius above a pedestal, until it moves less than this.
HALF_LIGHT_ITERATIONS = 4
HALF_LIGHT_TOLERANCE_PX = 1e-3
#: Pixels of corrected cut-outs laid out and measured together (with their mosaic, about
#: 80 MiB). The sources with neighbours are corrected a batch of cut-outs at a time: in a
#: crowded frame their boxes overlap and together hold several times the frame's pixels (2 GiB
#: for a 4352^2 tile of 30,000 stars), which no memory budget by the frame's size foresees.
#: The 4096^2 bench sky's 663 cut-outs (3.8 million pixels) still make one batch.
MOSAIC_MAX_PIXELS = 2**22


def sep_ellipses(a: np.ndarray, b: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ellipses (a, b, theta) that SEP's aperture functions accept for every source, and which were degenerate.

    SEP rejects a whole ``sum_ellipse`` call ("invalid aperture parameters") when any
    one source has theta outside [-pi/2, pi/2], a or b not finite, or b > a. Its own
    extraction computes theta in float32, so a one-pixel-wide vertical object comes
    back with ``float32(pi/2) = 1.5707963705``, just above pi/2 in float64 (SEP issue
    #110): theta is clipped into the range in float64, which changes no ellipse. A
    shape with a or b zero, negative or not finite (or theta not finite) defines no
    ellipse: that source is measured in a circle of :data:`DEGENERATE_AXIS_PX` (times
    the Kron scale, so at least ``kron_min_radius`` pixels) and reported as degenerate,
    so one bad shape cannot lose the frame's photometry.

    Parameters
    ----------
    a, b : ndarray
        Semi-major and semi-minor axes, pixels.
    theta : ndarray
        Position angle of ``a`` from +x towards +y, radians.

    Returns
    -------
    a, b, theta : ndarray of float64
        Valid ellipse parameters (b <= a, theta in [-pi/2, pi/2]).
    degenerate : ndarray of bool
        True where a circle replaced an unusable shape (to flag as SINGULAR).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    theta = np.asarray(theta, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        degenerate = ~(np.isfinite(a) & np.isfinite(b) & np.isfinite(theta) & (a > 0) & (b > 0))
    a = np.where(degenerate, DEGENERATE_AXIS_PX, a)
    b = np.where(degenerate, DEGENERATE_AXIS_PX, np.minimum(b, a))  # b > a only by rounding
    theta = np.where(degenerate, 0.0, np.clip(theta, -HALF_PI, HALF_PI))
    return a, b, theta, degenerate


def stays_on_source(objects: np.ndarray, x: np.ndarray, y: np.ndarray,
                    neighbours: np.ndarray | None = None) -> np.ndarray:
    """Whether each refined position (x, y) is still on its own detection in ``objects``.

    On its own detection: no farther from the isophotal barycentre than the isophote's
    semi-major axis ``a`` (or 1 px, for the smallest), and no nearer to another
    detection's peak than to its own. A window pulled towards a neighbour fails; a
    faint source's noisy barycentre, or a blend component's (biased by the pixels the
    deblender cut away), moves by a fraction of that and passes. Where a window strayed
    beyond the isophote on the reference images (``tests/data/sextractor``), Source
    Extractor's XWIN lies at the barycentre, not where the window went.

    Parameters
    ----------
    objects : ndarray
        SEP's objects the positions belong to (``x``, ``y``, ``a``, ``xpeak``,
        ``ypeak``), one per position.
    x, y : ndarray
        Refined positions, pixels.
    neighbours : ndarray, optional
        Every detection whose peak may capture a window (``objects`` and those around
        them, e.g. beyond a strip's core); by default ``objects`` themselves.
    """
    inside = np.hypot(x - objects["x"], y - objects["y"]) <= np.maximum(objects["a"], 1.0)
    others = objects if neighbours is None else neighbours
    if len(others) < 2:
        return inside
    peaks = np.c_[others["xpeak"], others["ypeak"]].astype(np.float64)
    own = np.hypot(x - objects["xpeak"], y - objects["ypeak"])
    nearest, _ = cKDTree(peaks).query(np.c_[x, y])  # its own peak is among them: nearest <= own
    return inside & (own <= nearest + 1e-6)


def measure(
    data: np.ndarray,
    objects: np.ndarray,
    error: np.ndarray,
    mask: np.ndarray | None,
    settings: PhotometrySettings,
    *,
    gain: float | None = None,
    background_level: float = 0.0,
    saturation_level: float | None = None,
    edge_margin_px: float = 3.0,
    neighbours: np.ndarray | None = None,
    segmap: np.ndarray | None = None,
    seg_ids: np.ndarray | None = None,
    companions: np.ndarray | None = None,
    max_aperture_px: float | None = None,
) -> dict[str, np.ndarray]:
    """Measure every detected object on the background-subtracted image.

    Parameters
    ----------
    data : ndarray
        Background-subtracted float32 image (counts), masked pixels set to 0.
    objects : ndarray
        SEP's extraction output.
    error : ndarray
        Per-pixel 1-sigma background noise (counts).
    mask : ndarray of bool, optional
        True where pixels must not be used.
    settings : PhotometrySettings
        Aperture radii (pixels) and Kron parameters.
    gain : float, optional
        Electrons per count, adding source Poisson noise to flux errors.
    background_level : float
        Sky level (counts) added back to peaks before comparing with ``saturation_level``.
    saturation_level : float, optional
        Raw pixel value (counts, background included) at which the detector saturates.
    edge_margin_px : float
        Sources closer than this to the edge get the NEAR_EDGE flag.
    neighbours : ndarray, optional
        SEP's objects around ``objects`` too (e.g. beyond a strip's core), in the same
        coordinates: a windowed centroid pulled onto any of their peaks is not kept.
    segmap : integer ndarray, optional
        Which source each pixel of ``data`` belongs to (0: none), as
        :func:`skysift.core.detection.detect` returns it: other sources' pixels are then
        corrected in every measurement (:func:`corrected_cutout`), a source with more
        than :data:`CONTAMINATED_AREA_FRACTION` of its first-moment ellipse or Kron
        aperture in them is flagged APER_CONTAMINATED, and the half-light radius is
        measured above the local pedestal. Without it, neighbours' light counts as the
        source's own.
    seg_ids : ndarray of int, optional
        Each object's label in ``segmap`` (:attr:`skysift.core.detection.Detections.seg_ids`);
        required with ``segmap``.
    companions : bool ndarray, optional
        Pixels of a source's own isophote that belong to an undetected companion
        (:attr:`skysift.core.detection.Detections.companions`), with ``segmap``: they are
        corrected as other sources' pixels are, mirrored through the source's peak, but do
        not count towards APER_CONTAMINATED (Source Extractor's flag 1, which knows only
        detected neighbours).
    max_aperture_px : float, optional
        Largest semi-major axis of a Kron aperture (pixels); by default
        :data:`KRON_MAX_IMAGE_FRACTION` of the smaller side of ``data``.

    Returns
    -------
    dict of column name to array, one entry per object.
    """
    n = len(objects)
    ny, nx = data.shape
    x, y = objects["x"].astype(np.float64), objects["y"].astype(np.float64)
    # Pixel values near float32's maximum overflow SEP's moments into inf/NaN positions:
    # such a source is measured at its peak pixel (always finite) and flagged SINGULAR
    # by sep_ellipses below (its a, b or theta are not finite either, or are made so).
    lost = ~(np.isfinite(x) & np.isfinite(y))
    if lost.any():
        x[lost], y[lost] = objects["xpeak"][lost], objects["ypeak"][lost]
    a, b, theta = objects["a"], objects["b"], objects["theta"]
    if lost.any():
        a, b, theta = a.copy(), b.copy(), theta.copy()
        a[lost] = np.nan
    if n == 0:
        return _empty_columns(settings)
    if np.ndim(error) == 0:
        error = np.full(data.shape, error, dtype=np.float32)
    if max_aperture_px is None:
        max_aperture_px = KRON_MAX_IMAGE_FRACTION * min(ny, nx)
    if segmap is not None and (seg_ids is None or len(seg_ids) != n):
        raise ValueError("measure: a segmentation map needs seg_ids, each object's label in it")

    ea, eb, etheta, degenerate = sep_ellipses(a, b, theta)
    kron = _kron(data, x, y, ea, eb, etheta, error, mask, gain, settings, max_aperture_px)
    pedestal = np.zeros(n)
    if segmap is not None:
        pedestal = _local_pedestal(data, x, y, ea, eb, kron, error, segmap, mask)

    contaminated = np.zeros(n, dtype=bool)
    own = None if segmap is None else np.asarray(seg_ids)
    centres = (x, y)
    window = (np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan), np.zeros(n, dtype=np.int16))
    corrected = windowed = np.zeros(n, dtype=bool)
    frame_kron = kron.take(np.arange(n))  # as the frame measures it, before the corrections below
    if segmap is not None:
        contaminated, centres, corrected, windowed = _correct_neighbours(
            data, error, mask, (segmap, companions), own, x, y, (ea, eb, etheta), kron, pedestal, window, gain,
            settings, max_aperture_px)
    # The whole frame measures what the corrected cut-outs did not: the half-light radius of
    # the sources without neighbours, the windowed centroid of those and of the sources whose
    # window would leave their cut-out (SEP measures each source on its own: a subset of them
    # gets the values the whole set would).
    rows = np.flatnonzero(~windowed)
    r50 = _frame_window(data, x, y, ea, eb, frame_kron, pedestal, mask, max_aperture_px, rows, window)
    alone = ~corrected[rows]
    kron.r50[rows[alone]] = r50[alone]
    sig, xwin, ywin, win_flag = window

    good_win = (win_flag == 0) & np.isfinite(xwin) & np.isfinite(ywin) & (np.hypot(xwin - x, ywin - y) < 2.0 * sig + 1)
    good_win &= stays_on_source(objects, np.where(good_win, xwin, x), np.where(good_win, ywin, y), neighbours)
    xpos = np.where(good_win, xwin, x)
    ypos = np.where(good_win, ywin, y)

    r50 = kron.r50
    columns: dict[str, np.ndarray] = {
        "x": xpos,
        "y": ypos,
        "x_err": np.sqrt(np.clip(objects["errx2"], 0, None)),
        "y_err": np.sqrt(np.clip(objects["erry2"], 0, None)),
        "a": a.astype(np.float32),
        "b": b.astype(np.float32),
        "theta": theta.astype(np.float32),
        "ellipticity": (1.0 - b / np.where(a > 0, a, np.nan)).astype(np.float32),
        "kron_radius": kron.radius.astype(np.float32),
        "half_light_radius_px": r50.astype(np.float32),
        "fwhm_px": (GAUSSIAN_R50_TO_FWHM * r50).astype(np.float32),
        "peak": objects["peak"].astype(np.float32),
        "npix": objects["npix"].astype(np.int32),
        "flux": kron.flux,
        "flux_err": kron.flux_err,
    }
    columns.update(_circles(data, xpos, ypos, error, mask, gain, settings, segmap, companions, own, centres))
    with np.errstate(divide="ignore", invalid="ignore"):
        columns["snr"] = np.where(kron.flux_err > 0, kron.flux / kron.flux_err, 0.0).astype(np.float32)

    flag = objects["flag"].astype(np.int64) | F.aperture_flags(kron.aper_flag | kron.kron_flag)
    flag |= np.where(degenerate, F.SINGULAR, 0)
    flag |= np.where(contaminated, F.APER_CONTAMINATED, 0)
    near = (xpos < edge_margin_px) | (ypos < edge_margin_px) | (xpos > nx - 1 - edge_margin_px) | (ypos > ny - 1 - edge_margin_px)
    flag |= np.where(near, F.NEAR_EDGE, 0)
    if saturation_level is not None:
        flag |= np.where(objects["peak"] + background_level >= saturation_level, F.SATURATED, 0)
    columns["flags"] = flag.astype(np.int32)
    return columns


def _correct_neighbours(data, error, mask, maps, own, x, y, ellipses, kron: _Kron, pedestal, window,
                        gain, settings: PhotometrySettings, max_aperture_px: float,
                        ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray], np.ndarray, np.ndarray]:
    """Re-measure, with other sources' pixels corrected, the sources that have some near them.

    ``kron`` (Kron radius and flux, half-light radius) and ``window`` (sigma, x, y and flag
    of the windowed centroids) are updated in place for those sources; returns which are
    APER_CONTAMINATED, the points each source's corrected pixels are mirrored through
    (:func:`_symmetry_centres`), which sources' Kron measurements and which windowed
    centroids (those whose window stays within the cut-out) were corrected. Where no other
    source has a pixel in the first-moment ellipse (6 a, b), the Kron aperture or the
    half-light circle (6 a), nor a companion, the correction would change nothing, and the
    whole-frame measurement stands. ``maps``: the segmentation map and the companions map (or None).
    """
    segmap, companions = maps
    ea, eb, etheta = ellipses
    sig, xwin, ywin, win_flag = window
    contaminated, windowed = np.zeros(len(x), dtype=bool), np.zeros(len(x), dtype=bool)
    region = np.maximum(KRON_INTEGRATION_RADIUS, kron.aperture) * ea + 1.0
    reach = _kron_reach(ea, settings, max_aperture_px)
    foreign = _foreign_kinds(segmap, companions, own, x, y, region)
    dirty = np.flatnonzero(foreign)
    centres = _symmetry_centres(data, companions, x, y, foreign == FOREIGN_COMPANION)
    for i, mosaic in _corrected_mosaics(dirty, data, error, mask, maps, own, x, y, reach, centres):
        mx, my = mosaic.positions(x[i], y[i])
        # the Kron radius skips other sources' pixels, the sums take their mirror images (SExtractor)
        fixed = _kron(mosaic.data, mx, my, ea[i], eb[i], etheta[i], mosaic.error, mosaic.mask, gain, settings,
                      max_aperture_px, radius_mask=mosaic.skipped)
        # (masked pixels are flagged where the mask has them, not where neighbours are)
        fixed.kron_flag = (fixed.kron_flag & ~sep.APER_HASMASKED) | (kron.kron_flag[i] & sep.APER_HASMASKED)
        fixed.r50, plain = _half_light(mosaic.data, mx, my, ea[i], eb[i], fixed, pedestal[i], mosaic.mask,
                                       max_aperture_px)
        kron.assign(i, fixed)
        contaminated[i] = np.maximum(
            mosaic.neighbour_fraction(mx, my, ea[i], eb[i], etheta[i], KRON_INTEGRATION_RADIUS),
            mosaic.neighbour_fraction(mx, my, ea[i], eb[i], etheta[i], fixed.aperture),
        ) > CONTAMINATED_AREA_FRACTION
        sig_i, xw, yw, wf = _window(mosaic.data, mx, my, plain, mosaic.mask)
        inside = (WINDOW_NSIG + 2.0) * sig_i + 1.0 <= reach[i]  # the window stays in its cut-out
        back_x, back_y = x[i] - mx, y[i] - my  # mosaic to image coordinates
        i = i[inside]
        sig[i], win_flag[i] = sig_i[inside], wf[inside]
        xwin[i], ywin[i] = xw[inside] + back_x[inside], yw[inside] + back_y[inside]
        windowed[i] = True
    corrected = np.zeros(len(x), dtype=bool)
    corrected[dirty] = True
    return contaminated, centres, corrected, windowed


def _frame_window(data, x, y, ea, eb, kron: _Kron, pedestal, mask, max_aperture_px: float, rows: np.ndarray,
                  window) -> np.ndarray:
    """The windowed centroids of ``rows`` (indices) on the whole frame, into ``window`` (sigma,
    x, y, flag), sized by their half-light radius (:func:`_half_light` of the frame's ``kron``);
    returns their half-light radius above the ``pedestal``."""
    if rows.size == 0:
        return np.zeros(0)
    r50, plain = _half_light(data, x[rows], y[rows], ea[rows], eb[rows], kron.take(rows), pedestal[rows], mask,
                             max_aperture_px)
    # the window's size is Source Extractor's (its FLUX_RADIUS knows no pedestal)
    sig, xwin, ywin, win_flag = _window(data, x[rows], y[rows], plain, mask)
    for column, values in zip(window, (sig, xwin, ywin, win_flag), strict=True):
        column[rows] = values
    return r50


@dataclass
class _Kron:
    """Kron radius and flux and the half-light radius of some sources (one array each)."""

    radius: np.ndarray  # r_kron, units of a and b
    kron_flag: np.ndarray
    aperture: np.ndarray  # the Kron aperture, units of a and b
    flux: np.ndarray
    flux_err: np.ndarray
    aper_flag: np.ndarray
    r50: np.ndarray

    _COLUMNS: ClassVar[tuple[str, ...]] = ("radius", "kron_flag", "aperture", "flux", "flux_err", "aper_flag", "r50")

    def assign(self, rows: np.ndarray, other: _Kron) -> None:
        """These rows from ``other``, the measurement of these sources alone."""
        for name in self._COLUMNS:
            getattr(self, name)[rows] = getattr(other, name)

    def take(self, rows: np.ndarray) -> _Kron:
        """The measurement of these rows alone."""
        return _Kron(**{name: getattr(self, name)[rows] for name in self._COLUMNS})


def _kron(data, x, y, ea, eb, etheta, error, mask, gain, settings: PhotometrySettings,
          max_aperture_px: float, radius_mask: np.ndarray | None = None) -> _Kron:
    """SExtractor's AUTO flux (PHOT_AUTOPARAMS) and the radius holding half of it.

    ``radius_mask`` (default ``mask``) marks the pixels the Kron radius skips."""
    radius_mask = mask if radius_mask is None else radius_mask
    radius, kron_flag = sep.kron_radius(data, x, y, ea, eb, etheta, KRON_INTEGRATION_RADIUS, mask=radius_mask)
    radius = np.clip(np.where(np.isfinite(radius), radius, 0.0), 0.0, KRON_INTEGRATION_RADIUS)
    # As SExtractor's PHOT_AUTOPARAMS: the aperture is k * r_kron, at least r_min, in units of a, b.
    aperture = np.minimum(np.maximum(settings.kron_factor * radius, settings.kron_min_radius), max_aperture_px / ea)
    flux, flux_err, aper_flag = sep.sum_ellipse(
        data, x, y, ea, eb, etheta, aperture, err=error, gain=gain, mask=mask, subpix=1,
    )
    return _Kron(radius, kron_flag, aperture, flux, flux_err, aper_flag, np.full(len(x), np.nan))


def _half_light(data, x, y, ea, eb, kron: _Kron, pedestal: np.ndarray, mask,
                max_aperture_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Radius (pixels) of the circle holding half the Kron flux above the local ``pedestal``,
    and (SExtractor's FLUX_RADIUS) above the global background.

    The growth curve F(r) of the image holds the pedestal's ``pi r^2 p`` as well; the
    radius solves ``F(r) - pi r^2 p = (F_kron - A_kron p) / 2`` (A_kron the Kron
    aperture's area), by fixed-point iteration from ``p = 0``.
    """
    rmax = np.minimum(KRON_INTEGRATION_RADIUS * ea, max_aperture_px)
    half = 0.5 * (kron.flux - pedestal * np.pi * kron.aperture**2 * ea * eb)
    half = np.where(half > 0, half, np.nan)
    plain = _flux_radius(data, x, y, rmax, 0.5, np.where(kron.flux > 0, kron.flux, np.nan), mask)
    r50 = plain.copy()
    moving = np.flatnonzero(pedestal != 0)
    if moving.size:
        r50[moving] = _flux_radius(data, x[moving], y[moving], rmax[moving], 1.0, half[moving], mask)
        moving = moving[np.isfinite(r50[moving])]
    for _ in range(HALF_LIGHT_ITERATIONS):
        if moving.size == 0:
            break
        again = _flux_radius(data, x[moving], y[moving], rmax[moving], 1.0,
                             half[moving] + pedestal[moving] * np.pi * r50[moving] ** 2, mask)
        still = np.abs(again - r50[moving]) > HALF_LIGHT_TOLERANCE_PX
        r50[moving] = again
        moving = moving[still & np.isfinite(again)]
    return r50, plain


#: Sub-pixels a side of the half-light radius's growth curve on its bins' edges: r50 within 0.5%
#: (median) of 5x5 at 60% of the cost.
HALF_LIGHT_SUBPIX = 3


def _flux_radius(data, x, y, rmax, frac: float, normflux, mask) -> np.ndarray:
    """``sep.flux_radius(data, x, y, rmax, frac, normflux=normflux, mask=mask, subpix=HALF_LIGHT_SUBPIX)``'s
    radii: compiled where the extension is built (SEP's growth curve and inverse, to the bit,
    without the variances it also sums: 0.51-0.55x its time on 1,000 sources of a 2048^2 frame)."""
    if _loops is None or data.dtype not in (np.float32, np.float64) or (mask is not None and mask.dtype != bool):
        return sep.flux_radius(data, x, y, rmax, frac, normflux=normflux, mask=mask, subpix=HALF_LIGHT_SUBPIX)[0]
    x, y, rmax, normflux = _per_source(x, y, rmax, normflux)
    radius, flag = np.empty(len(x)), np.empty(len(x), dtype=np.int16)
    _loops.flux_radius(data, mask, x, y, rmax, normflux, float(frac), HALF_LIGHT_SUBPIX, radius, flag)
    return radius


def _per_source(x, *values) -> tuple[np.ndarray, ...]:
    """``x`` and ``values`` (arrays or scalars) as C-contiguous float64 arrays of ``x``'s shape: the
    per-source columns of the compiled loops."""
    return tuple(np.ascontiguousarray(np.broadcast_to(v, np.shape(x)), dtype=np.float64) for v in (x, *values))


def _local_pedestal(data, x, y, ea, eb, kron: _Kron, error: np.ndarray, segmap: np.ndarray,
                    mask: np.ndarray | None) -> np.ndarray:
    """Mean level (counts per pixel, above the global background) of the pixels of no
    source (``segmap`` 0) nor masked in an annulus :data:`PEDESTAL_ANNULUS_PX` wide around
    each Kron aperture: the light of a cluster's unresolved stars, a galaxy's halo or a
    nebula a source sits on.

    0 where it is not significant (within :data:`PEDESTAL_MIN_SIGMA` of its noise: a flat
    sky), where the annulus runs off the image, or holds too few such pixels.
    """
    rin = PEDESTAL_INNER_SCALE * kron.aperture * np.sqrt(ea * eb) + 1.0
    rout = rin + PEDESTAL_ANNULUS_PX
    sky_mask = _not_sky(segmap, mask, _rows_reached(y, rout, segmap.shape[0]))
    # with a mask, SEP scales the sum (and its error) to the whole annulus's area
    total, total_err, flag, covered = _annulus_sums(data, error, sky_mask, x, y, rin, rout)
    area = np.pi * (rout**2 - rin**2)
    free = area - covered
    usable = ((flag & (sep.APER_TRUNC | sep.APER_ALLMASKED)) == 0) & (free >= PEDESTAL_MIN_PIXELS)
    level = total / area
    noise = total_err / area * np.sqrt(area / np.maximum(free, 1.0))  # the scaled error was one of the free pixels'
    return np.where(usable & (np.abs(level) > PEDESTAL_MIN_SIGMA * noise), level, 0.0)


def _annulus_sums(data, error, flags: np.ndarray, x, y, rin, rout) -> tuple[np.ndarray, ...]:
    """``sep.sum_circann(data, x, y, rin, rout, err=error, mask=flags, subpix=1)`` (sum, error,
    flag) and the ``flags`` in each annulus, as ``sep.sum_circann(flags, ..., subpix=1)`` counts
    them: one compiled pass where the extension is built (and ``error`` is a map), two SEP calls
    otherwise."""
    if _loops is None or np.ndim(error) != 2:
        total, total_err, flag = sep.sum_circann(data, x, y, rin, rout, err=error, mask=flags, subpix=1)
        return total, total_err, flag, sep.sum_circann(flags, x, y, rin, rout, subpix=1)[0]
    x, y, rin, rout = _per_source(x, y, rin, rout)
    total, total_err, covered = np.empty(len(x)), np.empty(len(x)), np.empty(len(x))
    flag = np.empty(len(x), dtype=np.int16)
    _loops.annulus_sums(data, error, flags, x, y, rin, rout, total, total_err, flag, covered)
    return total, total_err, flag, covered


def _rows_reached(y: np.ndarray, radius: np.ndarray, ny: int) -> slice:
    """The rows of an image ``ny`` rows high that circles of ``radius`` around rows ``y``
    touch, with room to spare for SEP's pixel boxes; all of them when a circle is not finite."""
    low, high = y - radius, y + radius
    if len(y) == 0 or not (np.isfinite(low).all() and np.isfinite(high).all()):
        return slice(0, ny)
    return slice(max(0, int(np.floor(low.min())) - 2), min(ny, int(np.ceil(high.max())) + 3))


def _not_sky(segmap: np.ndarray, mask: np.ndarray | None, rows: slice) -> np.ndarray:
    """Pixels of a source or masked, on ``rows``; False elsewhere (pages ``np.zeros`` leaves
    untouched: a strip worker's sources reach about half of a frame's rows)."""
    not_sky = np.zeros(segmap.shape, dtype=bool)
    np.not_equal(segmap[rows], 0, out=not_sky[rows])
    if mask is not None:
        not_sky[rows] |= mask[rows]
    return not_sky


def _window(data, x, y, r50, mask) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Windowed centroids (XWIN/YWIN) with a Gaussian window of the half-light radius."""
    sig = np.where(np.isfinite(r50) & (r50 > 0), r50, 1.0) * (2.0 / 2.35)
    # exact pixel/circle overlaps (subpix=0) are both more accurate and faster than sampling
    xwin, ywin, win_flag = sep.winpos(data, x, y, sig, mask=mask, subpix=0)
    return sig, xwin, ywin, win_flag


def _circles(data, x, y, error, mask, gain, settings: PhotometrySettings, segmap, companions, seg_ids,
             centres) -> dict[str, np.ndarray]:
    """Fluxes in the fixed circular apertures around (x, y), other sources' pixels (and
    companions') corrected, mirrored through ``centres``: on the whole frame for the sources
    with none in reach, on their corrected cut-outs for the others."""
    n = len(x)
    columns = {}
    for k in range(1, len(settings.aperture_radii_px) + 1):
        columns[f"flux_aper_{k}"], columns[f"flux_aper_{k}_err"] = np.empty(n), np.empty(n)
    half = max(settings.aperture_radii_px) + 1.0
    dirty = np.zeros(0, dtype=int)
    if segmap is not None:
        dirty = np.flatnonzero(_foreign_kinds(segmap, companions, seg_ids, x, y, np.full(n, half)))
    clean = np.ones(n, dtype=bool)
    clean[dirty] = False
    rows = np.flatnonzero(clean)
    _sum_circles(columns, rows, data, x[rows], y[rows], error, mask, gain, settings)
    for i, mosaic in _corrected_mosaics(dirty, data, error, mask, (segmap, companions), seg_ids, x, y,
                                        np.full(n, half), centres):
        mx, my = mosaic.positions(x[i], y[i])
        _sum_circles(columns, i, mosaic.data, mx, my, mosaic.error, mosaic.mask, gain, settings)
    return columns


def _sum_circles(columns, rows: np.ndarray, data, x, y, error, mask, gain, settings: PhotometrySettings) -> None:
    """SEP's sums in the circular apertures around (x, y) in ``data``, into ``rows`` of ``columns``."""
    if rows.size == 0:
        return
    for k, radius in enumerate(settings.aperture_radii_px, start=1):
        flux, flux_err = columns[f"flux_aper_{k}"], columns[f"flux_aper_{k}_err"]
        flux[rows], flux_err[rows], _flag = sep.sum_circle(data, x, y, radius, err=error, gain=gain, mask=mask,
                                                           subpix=0)


def reach_px(objects: np.ndarray, settings: PhotometrySettings, shape: tuple[int, int]) -> np.ndarray:
    """Pixels around each source's barycentre that :func:`measure` reads on a frame of
    ``shape``: its neighbours' pixels there must be known to correct them."""
    ea = sep_ellipses(objects["a"], objects["b"], objects["theta"])[0]
    return np.maximum(_kron_reach(ea, settings, KRON_MAX_IMAGE_FRACTION * min(shape)),
                      # the circles' centre, the windowed one, stays within max(a, 1) px of the barycentre
                      max(settings.aperture_radii_px) + 1.0 + np.maximum(objects["a"], 1.0) + 2.0)


def _kron_reach(ea: np.ndarray, settings: PhotometrySettings, max_aperture_px: float) -> np.ndarray:
    """Pixels from a source's centre that its Kron radius, flux and half-light radius may read:
    the largest Kron aperture, and the first-moment ellipse (6 a, b, never capped)."""
    largest = np.maximum(settings.kron_factor * KRON_INTEGRATION_RADIUS, settings.kron_min_radius) * ea
    return np.ceil(np.maximum(np.minimum(largest, max_aperture_px), KRON_INTEGRATION_RADIUS * ea)) + 2.0


#: What :func:`_foreign` finds near a source: nothing, other sources' pixels, a companion in its isophote.
FOREIGN_NONE, FOREIGN_SOURCE, FOREIGN_COMPANION = 0, 1, 2


def _foreign(segmap: np.ndarray, own: int, cx: float, cy: float, half: float,
             companions: np.ndarray | None = None) -> int:
    """Whether another source has a pixel within ``half`` pixels (a box) of (cx, cy)
    (FOREIGN_SOURCE), or a companion in the source's own isophote (FOREIGN_COMPANION)."""
    ny, nx = segmap.shape
    if not (math.isfinite(cx) and math.isfinite(cy) and math.isfinite(half)):
        return FOREIGN_SOURCE  # no trustworthy position (overflowing pixel values): treat as contaminated
    # (a stop below 0 would count from the far edge: a box beyond the image is empty)
    rows = slice(max(0, int(cy - half)), max(0, min(ny, int(cy + half) + 2)))
    cols = slice(max(0, int(cx - half)), max(0, min(nx, int(cx + half) + 2)))
    box = segmap[rows, cols]
    mine = box == own
    if companions is not None and (companions[rows, cols] & mine).any():
        return FOREIGN_COMPANION
    if own != 0:  # the source's pixels are labelled: another's make more labelled pixels than its own
        other = np.count_nonzero(box) > np.count_nonzero(mine)
    else:
        other = bool(((box != 0) & ~mine).any())
    return FOREIGN_SOURCE if other else FOREIGN_NONE


def _foreign_kinds(segmap: np.ndarray, companions: np.ndarray | None, own, x: np.ndarray, y: np.ndarray,
                   half: np.ndarray) -> np.ndarray:
    """:func:`_foreign` of each source (int8): label ``own[i]``, box within ``half[i]`` of
    (x[i], y[i]). One compiled pass over the sources where the extension is built."""
    own = np.ascontiguousarray(own, dtype=np.int64)
    x, y, half = (np.ascontiguousarray(v, dtype=np.float64) for v in (x, y, half))
    if _loops is not None:
        kinds = np.empty(len(own), dtype=np.int8)
        _loops.foreign(segmap, companions, own, x, y, half, kinds)
        return kinds
    return np.array([_foreign(segmap, o, cx, cy, h, companions)
                     for o, cx, cy, h in zip(own.tolist(), x.tolist(), y.tolist(), half.tolist(), strict=True)],
                    dtype=np.int8)


def _symmetry_centres(data, companions, x, y, with_companion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The points each source's corrected pixels are mirrored through: the barycentre, as
    Source Extractor's, unless the source has a companion in its isophote; then the local
    peak of the image (3x3 box sums) nearest it, which the companion hardly moves (as
    detection found the companion: a peak on a companion's pixel is not the source's)."""
    cx, cy = x.copy(), y.copy()
    if with_companion.any():
        px, py = local_peak(data, x[with_companion], y[with_companion], steps=CENTRE_SEARCH_PX, box=True)
        ny, nx = data.shape
        on_companion = companions[np.clip(np.rint(py).astype(np.int64), 0, ny - 1),
                                  np.clip(np.rint(px).astype(np.int64), 0, nx - 1)]
        cx[with_companion] = np.where(on_companion, cx[with_companion], px)
        cy[with_companion] = np.where(on_companion, cy[with_companion], py)
    return cx, cy


@dataclass(frozen=True)
class Cutout:
    """A box of the image around one source, other sources' pixels corrected."""

    data: np.ndarray
    error: np.ndarray
    mask: np.ndarray | None
    x0: int  # the box's first column and row in the image
    y0: int
    neighbour: np.ndarray  # bool: pixels of other sources (replaced)
    clipped: bool = False  # the box reaches beyond the image (SEP must see the image's edge there)
    replaced: np.ndarray | None = None  # bool: those and the source's own companions' (None: as neighbour)


@dataclass(frozen=True)
class _Mosaic:
    """Cut-outs laid side by side in one array, so that SEP measures all their sources in
    one call (each measurement stays within its own cut-out: its reach is the box's)."""

    data: np.ndarray
    error: np.ndarray
    mask: np.ndarray | None
    neighbour: np.ndarray  # bool: other sources' pixels, replaced
    skipped: np.ndarray  # bool: what the Kron radius leaves out (replaced pixels and masked ones)
    dx: np.ndarray  # per cut-out: mosaic coordinates minus image coordinates
    dy: np.ndarray

    def positions(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image positions of the cut-outs' sources, in the mosaic."""
        return x + self.dx, y + self.dy

    def neighbour_fraction(self, x, y, a, b, theta, r) -> np.ndarray:
        """Fraction of the pixels centred in each ellipse (x, y, r a, r b, theta) (mosaic
        coordinates) that belong to other sources."""
        covered, _err, _flag = sep.sum_ellipse(self.neighbour, x, y, a, b, theta, r, subpix=1)
        area, _err, _flag = sep.sum_ellipse(self._everywhere, x, y, a, b, theta, r, subpix=1)
        return covered / np.maximum(area, 1.0)

    @cached_property
    def _everywhere(self) -> np.ndarray:
        """All True: its sums are the areas of the ellipses within the mosaic (made once a mosaic)."""
        return np.ones(self.neighbour.shape, dtype=bool)


def _corrected_mosaics(rows: np.ndarray, data, error, mask, maps, seg_ids, x, y, half: np.ndarray,
                       centres) -> Iterator[tuple[np.ndarray, _Mosaic]]:
    """``(sources, mosaic)``: the :func:`corrected_cutout` within ``half[i]`` of (x[i], y[i])
    of each source ``i`` in ``rows`` (other sources' and companions' pixels, ``maps`` =
    (segmentation map, companions map), mirrored through ``centres``), laid out in mosaics
    (:func:`_mosaics`) a batch of at most :data:`MOSAIC_MAX_PIXELS` pixels of cut-outs at a
    time, so that memory stays bounded however many sources have neighbours. ``sources`` are
    the mosaic's sources, in its order.

    The layout depends only on the cut-outs' boxes (:func:`_cutout_box`), so each cut-out is
    made as its place in the mosaic is filled, and only one is held at a time beside the
    mosaic (the 4096^2 bench sky's batch of 2 million pixels of cut-outs was 18 MiB more)."""
    segmap, companions = maps
    # Python numbers: a cut-out is a few dozen small steps, and numpy scalars' arithmetic is slow
    own, xs, ys, halves = np.asarray(seg_ids).tolist(), x.tolist(), y.tolist(), half.tolist()
    sx, sy = centres[0].tolist(), centres[1].tolist()
    order = rows.tolist()
    boxes = [_cutout_box(xs[i], ys[i], halves[i], data.shape) for i in order]

    def cut(k: int) -> Cutout:
        i = order[k]
        return corrected_cutout(data, error, mask, segmap, own[i], xs[i], ys[i], halves[i], companions=companions,
                                centre=(sx[i], sy[i]))

    for start, stop in _batched([box.size for box in boxes], MOSAIC_MAX_PIXELS):
        for positions in _mosaics(boxes[start:stop]):
            group = start + positions
            layout = _Layout.of([boxes[k] for k in group])
            if _loops is None:
                mosaic = _lay_out(layout, (cut(k) for k in group.tolist()), masked=mask is not None)
            else:
                chosen = rows[group]
                mosaic = _fill_compiled(layout, data, error, mask, maps, np.asarray(seg_ids)[chosen],
                                        (centres[0][chosen], centres[1][chosen]))
            yield rows[group], mosaic


@dataclass(frozen=True)
class _Box:
    """The pixels [y0, y1) x [x0, x1) of a cut-out, and whether its box reaches beyond the image."""

    x0: int
    x1: int
    y0: int
    y1: int
    clipped: bool

    @property
    def shape(self) -> tuple[int, int]:
        """The cut-out's shape (empty, as NumPy slices it, for a centre beyond the image)."""
        return max(0, self.y1 - self.y0), max(0, self.x1 - self.x0)

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]


def _cutout_box(cx: float, cy: float, half: float, shape: tuple[int, int]) -> _Box:
    """The box of the image within ``half`` pixels of (cx, cy) that :func:`corrected_cutout` cuts."""
    ny, nx = shape
    # (a stop below 0 would count from the far edge: a box beyond the image is empty)
    x0, x1 = max(0, math.floor(cx - half)), max(0, min(nx, math.ceil(cx + half) + 1))
    y0, y1 = max(0, math.floor(cy - half)), max(0, min(ny, math.ceil(cy + half) + 1))
    clipped = bool(cx - half < 0 or cy - half < 0 or math.ceil(cx + half) + 1 > nx or math.ceil(cy + half) + 1 > ny)
    return _Box(x0, x1, y0, y1, clipped)


def _batched(sizes: list[int], max_pixels: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)``: consecutive batches of cut-outs of these ``sizes`` (pixels), of at most
    ``max_pixels`` pixels each (a larger cut-out makes a batch of its own)."""
    start = pixels = 0
    for k, size in enumerate(sizes):
        if k > start and pixels + size > max_pixels:
            yield start, k
            start, pixels = k, 0
        pixels += size
    if sizes:
        yield start, len(sizes)


def _mosaics(boxes: list[_Box]) -> Iterator[np.ndarray]:
    """Positions in ``boxes`` of the cut-outs of each mosaic: those not clipped by the image's
    edge in one mosaic (shelves of cut-outs, tallest first), each clipped one in a mosaic of its own."""
    whole = [k for k, box in enumerate(boxes) if not box.clipped]
    groups = [whole] if whole else []
    groups += [[k] for k, box in enumerate(boxes) if box.clipped]
    for group in groups:
        yield np.asarray(group, dtype=int)


@dataclass(frozen=True)
class _Layout:
    """Where each cut-out of ``boxes`` goes in a mosaic: shelves of cut-outs, tallest first."""

    boxes: list[_Box]
    x: list[int]  # each cut-out's first column and row in the mosaic
    y: list[int]
    shape: tuple[int, int]  # the mosaic's

    @classmethod
    def of(cls, boxes: list[_Box]) -> _Layout:
        xs, ys, shape = shelf_layout(np.array([box.shape[1] for box in boxes]), np.array([box.shape[0] for box in boxes]))
        return cls(boxes, xs, ys, shape)

    def blank(self, *, masked: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
        """The mosaic's arrays before any cut-out is placed: data 0, error 1, mask, neighbour
        and replaced pixels none (what stays between the cut-outs)."""
        data, error = np.zeros(self.shape, np.float32), np.ones(self.shape, np.float32)
        mask = np.zeros(self.shape, dtype=bool) if masked else None
        return data, error, mask, np.zeros(self.shape, dtype=bool), np.zeros(self.shape, dtype=bool)

    def mosaic(self, data, error, mask, neighbour, replaced) -> _Mosaic:
        """The mosaic of these arrays, filled."""
        skipped = replaced if mask is None else replaced | mask
        dx = np.array(self.x, dtype=np.float64) - np.array([box.x0 for box in self.boxes], dtype=np.float64)
        dy = np.array(self.y, dtype=np.float64) - np.array([box.y0 for box in self.boxes], dtype=np.float64)
        return _Mosaic(data, error, mask, neighbour, skipped, dx, dy)


def _lay_out(layout: _Layout, cuts: Iterable[Cutout], *, masked: bool) -> _Mosaic:
    """The mosaic of ``layout`` filled with ``cuts`` (one per box, in order), each taken as its place is filled."""
    data, error, mask, neighbour, replaced = layout.blank(masked=masked)
    for cut, ox, oy in zip(cuts, layout.x, layout.y, strict=True):
        box = (slice(oy, oy + cut.data.shape[0]), slice(ox, ox + cut.data.shape[1]))
        data[box], error[box], neighbour[box] = cut.data, cut.error, cut.neighbour
        replaced[box] = cut.neighbour if cut.replaced is None else cut.replaced
        if mask is not None:
            mask[box] = cut.mask
    return layout.mosaic(data, error, mask, neighbour, replaced)


def _fill_compiled(layout: _Layout, data, error, mask, maps, own: np.ndarray,
                   centres: tuple[np.ndarray, np.ndarray]) -> _Mosaic:
    """The mosaic of ``layout`` with each box's :func:`corrected_cutout` (label ``own[k]``,
    mirrored through ``centres``), written in place by the compiled loop: what :func:`_lay_out`
    makes of the cut-outs, without an array per cut-out."""
    segmap, companions = maps
    arrays = layout.blank(masked=mask is not None)

    def column(values) -> np.ndarray:
        return np.ascontiguousarray(values, dtype=np.int64)

    boxes = layout.boxes
    _loops.fill(data, error, mask, segmap, companions, column(own),
                 column([b.x0 for b in boxes]), column([b.x1 for b in boxes]),
                 column([b.y0 for b in boxes]), column([b.y1 for b in boxes]),
                 column(layout.x), column(layout.y),
                 np.ascontiguousarray(centres[0], dtype=np.float64), np.ascontiguousarray(centres[1], dtype=np.float64),
                 *arrays)
    return layout.mosaic(*arrays)


def corrected_cutout(data: np.ndarray, error: np.ndarray, mask: np.ndarray | None, segmap: np.ndarray, own: int,
                     cx: float, cy: float, half: float, *, companions: np.ndarray | None = None,
                     centre: tuple[float, float] | None = None) -> Cutout:
    """The box within ``half`` pixels of (cx, cy) with other sources' pixels replaced, as
    SExtractor's ``MASK_TYPE CORRECT`` replaces them.

    A pixel of another source (``segmap`` neither 0 nor ``own``), or of a companion inside
    the source's own isophote (``companions``), takes the value and the error of the pixel
    opposite it through ``centre`` (default (cx, cy)), the source's centre, whose light
    there is its own by symmetry; where that pixel is off the image, masked or replaced
    too, the value is 0 (the sky). Nothing is copied beyond the box.
    """
    ny, nx = data.shape
    cutout = _cutout_box(cx, cy, half, data.shape)
    x0, x1, y0, y1 = cutout.x0, cutout.x1, cutout.y0, cutout.y1
    box = (slice(y0, y1), slice(x0, x1))
    seg = segmap[box]
    neighbour = (seg != 0) & (seg != own)
    replaced = neighbour if companions is None else neighbour | (companions[box] & (seg == own))
    cut = np.array(data[box], dtype=np.float32)
    err = np.array(error[box], dtype=np.float32)
    cut_mask = None if mask is None else np.ascontiguousarray(mask[box])
    if replaced.any():
        yy, xx = np.nonzero(replaced)
        sx, sy = (cx, cy) if centre is None else centre
        my = np.rint(2.0 * sy - (yy + y0)).astype(np.int64)
        mx = np.rint(2.0 * sx - (xx + x0)).astype(np.int64)
        usable = (mx >= 0) & (mx < nx) & (my >= 0) & (my < ny)
        opposite = segmap[my[usable], mx[usable]]
        usable[usable] &= (opposite == 0) | (opposite == own)
        if companions is not None:
            usable[usable] &= ~companions[my[usable], mx[usable]]
        if mask is not None:
            usable[usable] &= ~mask[my[usable], mx[usable]]
        cut[yy, xx] = np.where(usable, data[np.where(usable, my, 0), np.where(usable, mx, 0)], 0.0)
        err[yy[usable], xx[usable]] = error[my[usable], mx[usable]]
    return Cutout(cut, err, cut_mask, x0, y0, neighbour, cutout.clipped, replaced)


def _empty_columns(settings: PhotometrySettings) -> dict[str, np.ndarray]:
    names = [
        "x", "y", "x_err", "y_err", "a", "b", "theta", "ellipticity", "kron_radius",
        "half_light_radius_px", "fwhm_px", "peak", "flux", "flux_err", "snr",
    ]
    for k in range(1, len(settings.aperture_radii_px) + 1):
        names += [f"flux_aper_{k}", f"flux_aper_{k}_err"]
    columns = {name: np.zeros(0, dtype=np.float64) for name in names}
    columns["npix"] = np.zeros(0, dtype=np.int32)
    columns["flags"] = np.zeros(0, dtype=np.int32)
    return columns
