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
"""

from __future__ import annotations

import numpy as np
import sep
from scipy.spatial import cKDTree

from . import flags as F
from .settings import PhotometrySettings

GAUSSIAN_R50_TO_FWHM = 2.0  # a Gaussian's half-light radius is half its FWHM
HALF_PI = np.pi / 2.0  # in float64: SEP's aperture functions accept theta in [-HALF_PI, HALF_PI]
#: Semi-axes (pixels) of the circle that measures a source whose shape is degenerate.
DEGENERATE_AXIS_PX = 1.0


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

    Returns
    -------
    dict of column name to array, one entry per object.
    """
    n = len(objects)
    ny, nx = data.shape
    x, y = objects["x"].astype(np.float64), objects["y"].astype(np.float64)
    a, b, theta = objects["a"], objects["b"], objects["theta"]
    if n == 0:
        return _empty_columns(settings)

    ea, eb, etheta, degenerate = sep_ellipses(a, b, theta)
    kron_radius, kron_flag = sep.kron_radius(data, x, y, ea, eb, etheta, 6.0, mask=mask)
    kron_radius = np.where(np.isfinite(kron_radius), kron_radius, 0.0)
    # As SExtractor's PHOT_AUTOPARAMS: the aperture is k * r_kron, at least r_min, in units of a, b.
    aperture = np.maximum(settings.kron_factor * kron_radius, settings.kron_min_radius)
    flux, flux_err, aper_flag = sep.sum_ellipse(
        data, x, y, ea, eb, etheta, aperture, err=error, gain=gain, mask=mask, subpix=1,
    )

    # 3x3 sub-pixels on the circle's edge: r50 within 0.5% (median) of 5x5 at 60% of the cost
    r50, _r50_flag = sep.flux_radius(
        data, x, y, 6.0 * ea, 0.5, normflux=np.where(flux > 0, flux, np.nan), subpix=3, mask=mask,
    )
    sig = np.where(np.isfinite(r50) & (r50 > 0), r50, 1.0) * (2.0 / 2.35)
    # exact pixel/circle overlaps (subpix=0) are both more accurate and faster than sampling
    xwin, ywin, win_flag = sep.winpos(data, x, y, sig, mask=mask, subpix=0)
    good_win = (win_flag == 0) & np.isfinite(xwin) & np.isfinite(ywin) & (np.hypot(xwin - x, ywin - y) < 2.0 * sig + 1)
    good_win &= stays_on_source(objects, np.where(good_win, xwin, x), np.where(good_win, ywin, y), neighbours)
    xpos = np.where(good_win, xwin, x)
    ypos = np.where(good_win, ywin, y)

    columns: dict[str, np.ndarray] = {
        "x": xpos,
        "y": ypos,
        "x_err": np.sqrt(np.clip(objects["errx2"], 0, None)),
        "y_err": np.sqrt(np.clip(objects["erry2"], 0, None)),
        "a": a.astype(np.float32),
        "b": b.astype(np.float32),
        "theta": theta.astype(np.float32),
        "ellipticity": (1.0 - b / np.where(a > 0, a, np.nan)).astype(np.float32),
        "kron_radius": kron_radius.astype(np.float32),
        "half_light_radius_px": r50.astype(np.float32),
        "fwhm_px": (GAUSSIAN_R50_TO_FWHM * r50).astype(np.float32),
        "peak": objects["peak"].astype(np.float32),
        "npix": objects["npix"].astype(np.int32),
        "flux": flux,
        "flux_err": flux_err,
    }
    for k, radius in enumerate(settings.aperture_radii_px, start=1):
        fa, fe, _fflag = sep.sum_circle(data, xpos, ypos, radius, err=error, gain=gain, mask=mask, subpix=0)
        columns[f"flux_aper_{k}"] = fa
        columns[f"flux_aper_{k}_err"] = fe
    with np.errstate(divide="ignore", invalid="ignore"):
        columns["snr"] = np.where(flux_err > 0, flux / flux_err, 0.0).astype(np.float32)

    flag = objects["flag"].astype(np.int64) | F.aperture_flags(aper_flag | kron_flag)
    flag |= np.where(degenerate, F.SINGULAR, 0)
    near = (xpos < edge_margin_px) | (ypos < edge_margin_px) | (xpos > nx - 1 - edge_margin_px) | (ypos > ny - 1 - edge_margin_px)
    flag |= np.where(near, F.NEAR_EDGE, 0)
    if saturation_level is not None:
        flag |= np.where(objects["peak"] + background_level >= saturation_level, F.SATURATED, 0)
    columns["flags"] = flag.astype(np.int32)
    return columns


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
