"""The image's seeing: FWHM of a Moffat profile fitted to its brightest clean stars.

Per-source ``fwhm_px`` is a fast size proxy (twice the half-light radius, exact for a
Gaussian); it overestimates the FWHM of real, winged PSFs. The image's seeing is
instead fitted: a circular Moffat (free amplitude, centre, width and beta, on a
constant) to each of up to ``MAX_STARS`` bright, isolated, unflagged point sources,
and the median of their FWHMs is reported.

Before any star is measured, the header's own seeing (:func:`header_seeing`) sets the
FWHM of the detection filter, as survey pipelines record it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from skysift.core import flags as F

__all__ = [
    "CANDIDATE_STARS",
    "HEADER_SEEING_RANGE_PX",
    "MAX_STARS",
    "MIN_STARS",
    "PIXEL_SCALE_KEYWORDS",
    "SEEING_KEYWORDS",
    "HeaderSeeing",
    "candidate_stamps",
    "header_pixel_scale_arcsec",
    "header_seeing",
    "seeing_fwhm_px",
]

MAX_STARS = 12
#: Bright clean stars whose stamps a frame keeps for the seeing fit.
CANDIDATE_STARS = 4 * MAX_STARS
MIN_STARS = 3


def _moffat_residuals(params: np.ndarray, xx: np.ndarray, yy: np.ndarray, stamp: np.ndarray) -> np.ndarray:
    amplitude, x0, y0, alpha, beta, sky = params
    r2 = (xx - x0) ** 2 + (yy - y0) ** 2
    return (amplitude * (1.0 + r2 / alpha**2) ** (-beta) + sky - stamp).ravel()


def _moffat_jacobian(params: np.ndarray, xx: np.ndarray, yy: np.ndarray, stamp: np.ndarray) -> np.ndarray:
    """Derivatives of :func:`_moffat_residuals` with respect to each parameter (one column each).

    With ``u = 1 + r^2 / alpha^2`` the model is ``amplitude * u^-beta + sky``.
    """
    amplitude, x0, y0, alpha, beta, _ = params
    dx, dy = (xx - x0).ravel(), (yy - y0).ravel()
    u = 1.0 + (dx * dx + dy * dy) / alpha**2
    power = u ** (-beta)
    slope = 2.0 * amplitude * beta * power / (u * alpha**2)  # -d(model)/d(r^2) times 2
    jacobian = np.empty((u.size, 6))
    jacobian[:, 0] = power
    jacobian[:, 1] = slope * dx
    jacobian[:, 2] = slope * dy
    jacobian[:, 3] = slope * (u - 1.0) * alpha  # = 2 amplitude beta u^(-beta-1) r^2 / alpha^3
    jacobian[:, 4] = -amplitude * power * np.log(u)
    jacobian[:, 5] = 1.0
    return jacobian


@dataclass(frozen=True)
class _MoffatProblem:
    """The least-squares problem of :func:`_fit_fwhm`: a stamp's pixel grid, the start and the bounds."""

    stamp: np.ndarray
    xx: np.ndarray
    yy: np.ndarray
    start: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    @classmethod
    def of(cls, stamp: np.ndarray, guess_fwhm: float) -> _MoffatProblem:
        half = stamp.shape[0] // 2
        yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
        beta = 3.0
        alpha = guess_fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
        return cls(stamp, xx, yy, np.array([stamp.max(), 0.0, 0.0, alpha, beta, 0.0]),
                   np.array([0.0, -2.0, -2.0, 0.3, 1.0, -np.inf]), np.array([np.inf, 2.0, 2.0, 4.0 * half, 30.0, np.inf]))

    def solve(self, **options):
        """scipy's ``least_squares`` on the problem, with the model's analytic derivatives."""
        # imported here, after the strip workers are forked: they never hold its 20 MiB
        from scipy.optimize import least_squares

        return least_squares(_moffat_residuals, self.start, jac=_moffat_jacobian, args=(self.xx, self.yy, self.stamp),
                             max_nfev=200, **options)

    def within_bounds(self, params: np.ndarray) -> bool:
        return bool(np.all((params >= self.lower) & (params <= self.upper)))

    def fwhm(self, fit) -> float | None:
        """The FWHM (pixels) of a fit, None if the fit failed or is wild."""
        _, _, _, alpha, beta, _ = fit.x
        if not fit.success or not 1.0 < beta < 30.0:
            return None
        fwhm = float(2.0 * alpha * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
        return fwhm if np.isfinite(fwhm) and 0.5 < fwhm < 2 * (self.stamp.shape[0] // 2) else None


def _fit_fwhm(stamp: np.ndarray, guess_fwhm: float) -> float | None:
    """FWHM (pixels) of a circular Moffat + constant fitted to a stamp, None if the fit is wild.

    scipy's least squares directly: the same model astropy's Moffat2D fits, at a
    fraction of the cost of astropy.modeling's per-call model copies, with the model's
    analytic derivatives (finite differences cost six more evaluations a step and 40%
    more time, for the same fit to ~1e-9). MINPACK's Levenberg-Marquardt fits first, unbounded;
    a fit that leaves the bounds is done again within them, so the answer is the bounded fit's.
    """
    problem = _MoffatProblem.of(stamp, guess_fwhm)
    # MINPACK's Levenberg-Marquardt first: about a third of the cost of the bounded trust region
    # (16-24 against 57 ms for a 2048^2 image's 12 stars), the same minimum (to 4e-4 px over 384
    # stamps of 8 images) when it lies within the bounds; a fit that leaves them, or fails, is
    # done again, bounded
    try:
        fit = problem.solve(method="lm")
    except ValueError:  # what refuses it (residuals not finite at the start) refuses the bounded fit too
        fit = None
    if fit is None or not (fit.success and problem.within_bounds(fit.x)):
        try:
            fit = problem.solve(bounds=(problem.lower, problem.upper))
        except ValueError:
            return None
    return problem.fwhm(fit)


def candidate_stamps(data: np.ndarray, columns: dict[str, np.ndarray], n: int = CANDIDATE_STARS) -> dict[int, np.ndarray]:
    """Background-subtracted stamps around the ``n`` most significant clean, unblended sources.

    Taken while the pixels are at hand (a tile may be gone by the time star scores are known).
    """
    clean = (columns["snr"] > 30) & ((columns["flags"] & (F.CLEAN_MASK | F.MERGED)) == 0)
    rows = np.flatnonzero(clean)
    rows = rows[np.argsort(-columns["snr"][rows])][:n]
    ny, nx = data.shape
    stamps = {}
    for i in rows:
        half = max(5, int(np.ceil(2.5 * max(columns["fwhm_px"][i], 1.0))))
        xc, yc = round(columns["x"][i]), round(columns["y"][i])
        if half <= xc < nx - half and half <= yc < ny - half:
            stamps[int(i)] = np.array(data[yc - half : yc + half + 1, xc - half : xc + half + 1], dtype=np.float64)
    return stamps


def seeing_fwhm_px(stamps: dict[int, np.ndarray], star_score: np.ndarray, fwhm_px: np.ndarray) -> float | None:
    """Median fitted FWHM (pixels) of the stamps of confident point sources, None if too few."""
    stars = [i for i in stamps if star_score[i] > 0.8][:MAX_STARS]
    if len(stars) < MIN_STARS:
        return None
    guess = float(np.median(fwhm_px[stars]))
    fwhms = [f for f in (_fit_fwhm(stamps[i], guess) for i in stars) if f is not None]
    return float(np.median(fwhms)) if len(fwhms) >= MIN_STARS else None


#: Header keywords of the seeing FWHM, tried in this order, with the unit each has when
#: its comment names none: ``SEEING`` in arcsec (NOAO/KPNO/CTIO, the DECam community
#: pipeline, skysift's synthetic skies), ``FWHM`` in arcsec, ``PSF_FWHM`` in arcsec. A unit in
#: the comment wins: FITS's ``[unit]`` at its start, else words such as CASU's (WFCAM,
#: VISTA) ``SEEING = 3.8 / Average FWHM (pixels)`` or the DECam pipeline's
#: ``FWHM = 4.1 / [pixel] median FWHM``.
SEEING_KEYWORDS = (("SEEING", "arcsec"), ("FWHM", "arcsec"), ("PSF_FWHM", "arcsec"))
#: Header keywords of the pixel scale (arcsec per pixel), when no WCS gives it.
PIXEL_SCALE_KEYWORDS = ("PIXSCALE", "PIXSCAL1", "SECPIX", "SECPIX1")
#: A header seeing outside this range (pixels) is not used: a wrong unit, or a placeholder.
HEADER_SEEING_RANGE_PX = (1.0, 20.0)

_TO_ARCSEC = {"arcsec": 1.0, "arcmin": 60.0, "deg": 3600.0}
_BRACKET_UNIT = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]")


@dataclass(frozen=True)
class HeaderSeeing:
    """The seeing a header records, in pixels, and the card it came from."""

    fwhm_px: float
    keyword: str


_UNIT_WORDS = {"arcsec": re.compile(r"arcsec|asec|\""), "arcmin": re.compile(r"arcmin"),
               "deg": re.compile(r"\bdeg"), "pix": re.compile(r"pix|pxl|\bpx\b")}


def _unit(comment: str) -> str | None:
    """'arcsec', 'arcmin', 'deg' or 'pix' as a card comment names it (its ``[unit]``, else
    the unit word it names first: "FWHM in pixels (0.4 arcsec each)" is in pixels), else None."""
    text = comment.strip().lower()
    bracket = _BRACKET_UNIT.match(text)
    words = bracket.group(1) if bracket else text
    found = {unit: match.start() for unit, pattern in _UNIT_WORDS.items() if (match := pattern.search(words))}
    return min(found, key=found.get) if found else None


def _positive(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) and number > 0 else None


def header_pixel_scale_arcsec(header) -> float | None:
    """The pixel scale (arcsec per pixel) a header states in :data:`PIXEL_SCALE_KEYWORDS`, else None."""
    for key in PIXEL_SCALE_KEYWORDS:
        if key in header and (scale := _positive(header[key])) is not None:
            return scale
    return None


def header_seeing(header, pixel_scale_arcsec: float | None) -> HeaderSeeing | None:
    """The seeing FWHM (pixels) the header records in :data:`SEEING_KEYWORDS`, else None.

    A value in angular units needs ``pixel_scale_arcsec`` (arcsec per pixel, from a WCS
    the caller trusts) or else a :data:`PIXEL_SCALE_KEYWORDS` card; without either it is
    not used. A value outside :data:`HEADER_SEEING_RANGE_PX` once in pixels is not used
    either (the next keyword is tried).
    """
    for key, default_unit in SEEING_KEYWORDS:
        if key not in header or (value := _positive(header[key])) is None:
            continue
        unit = _unit(str(header.comments[key])) or default_unit
        if unit == "pix":
            fwhm_px = value
        else:
            scale = pixel_scale_arcsec or header_pixel_scale_arcsec(header)
            if scale is None:
                continue
            fwhm_px = value * _TO_ARCSEC[unit] / scale
        low, high = HEADER_SEEING_RANGE_PX
        if low <= fwhm_px <= high:
            return HeaderSeeing(float(fwhm_px), key)
    return None
