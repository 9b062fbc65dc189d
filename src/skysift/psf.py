"""The image's seeing: FWHM of a Moffat profile fitted to its brightest clean stars.

Per-source ``fwhm_px`` is a fast size proxy (twice the half-light radius, exact for a
Gaussian); it overestimates the FWHM of real, winged PSFs. The image's seeing is
instead fitted: a circular Moffat (free amplitude, centre, width and beta, on a
constant) to each of up to ``MAX_STARS`` bright, isolated, unflagged point sources,
and the median of their FWHMs is reported.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares

from . import flags as F

MAX_STARS = 12
#: Bright clean stars whose stamps a frame keeps for the seeing fit.
CANDIDATE_STARS = 4 * MAX_STARS
MIN_STARS = 3


def _moffat_residuals(params: np.ndarray, xx: np.ndarray, yy: np.ndarray, stamp: np.ndarray) -> np.ndarray:
    amplitude, x0, y0, alpha, beta, sky = params
    r2 = (xx - x0) ** 2 + (yy - y0) ** 2
    return (amplitude * (1.0 + r2 / alpha**2) ** (-beta) + sky - stamp).ravel()


def _fit_fwhm(stamp: np.ndarray, guess_fwhm: float) -> float | None:
    """FWHM (pixels) of a circular Moffat + constant fitted to a stamp, None if the fit is wild.

    scipy's least squares directly: the same model astropy's Moffat2D fits, at a
    fraction of the cost of astropy.modeling's per-call model copies.
    """
    half = stamp.shape[0] // 2
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    beta = 3.0
    alpha = guess_fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    start = np.array([stamp.max(), 0.0, 0.0, alpha, beta, 0.0])
    lower = [0.0, -2.0, -2.0, 0.3, 1.0, -np.inf]
    upper = [np.inf, 2.0, 2.0, 4.0 * half, 30.0, np.inf]
    try:
        fit = least_squares(_moffat_residuals, start, args=(xx, yy, stamp), bounds=(lower, upper), max_nfev=200)
    except ValueError:
        return None
    _, _, _, alpha, beta, _ = fit.x
    if not fit.success or not 1.0 < beta < 30.0:
        return None
    fwhm = float(2.0 * alpha * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    return fwhm if np.isfinite(fwhm) and 0.5 < fwhm < 2 * half else None


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
