"""Star/galaxy separation from source size.

Point sources share the PSF's half-light radius whatever their brightness (the
"stellar locus" in a size-magnitude diagram); galaxies are larger. The locus is
found from bright, clean, compact sources, and each source's score is the chance
that its size is consistent with the locus given its measurement noise:
``star_score = 1`` for a perfect point source, ``0`` for clearly extended ones,
and about 0.5 where the size is too noisy to tell.

In a crowded field a source's size is measured with its neighbours' pixels replaced
(:mod:`skysift.core.photometry`) and above the local pedestal of unresolved light; where
neighbours covered much of its aperture (``APER_CONTAMINATED``) that correction leaves the
size less certain, and :data:`CONTAMINATED_SIZE_SCATTER` widens the spread it is judged
against, so that a cluster's stars are not called galaxies for their neighbours' sake.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from skysift.core import flags as F

__all__ = [
    "CONTAMINATED_SIZE_SCATTER",
    "MIN_LOCUS_MEMBERS",
    "MIN_LOCUS_SNR",
    "StellarLocus",
    "star_score",
    "stellar_locus",
]

MIN_LOCUS_SNR = 30.0
MIN_LOCUS_MEMBERS = 5
#: Relative size uncertainty added (in quadrature) for APER_CONTAMINATED sources.
CONTAMINATED_SIZE_SCATTER = 0.15


@dataclass(frozen=True)
class StellarLocus:
    r50_px: float  # half-light radius of the PSF, pixels
    scatter: float  # relative scatter of point-source sizes at high SNR
    members: int


def stellar_locus(r50: np.ndarray, snr: np.ndarray, flags: np.ndarray) -> StellarLocus | None:
    """The PSF's half-light radius from the most compact bright sources, or None if too few.

    Sources whose apertures neighbours contaminated are left out while enough others remain.
    """
    ok = (snr > MIN_LOCUS_SNR) & ((flags & F.CLEAN_MASK) == 0) & np.isfinite(r50) & (r50 > 0.3)
    alone = ok & ((flags & F.APER_CONTAMINATED) == 0)
    if alone.sum() >= MIN_LOCUS_MEMBERS:
        ok = alone
    sizes = np.sort(r50[ok])
    if len(sizes) < MIN_LOCUS_MEMBERS:
        return None
    # Galaxies only make sources bigger: take the compact end, then clip around its median.
    core = sizes[: max(MIN_LOCUS_MEMBERS, len(sizes) // 3)]
    centre = float(np.median(core))
    for _ in range(3):
        members = sizes[np.abs(sizes / centre - 1.0) < 0.15]
        if len(members) < MIN_LOCUS_MEMBERS:
            break
        centre = float(np.median(members))
    members = sizes[np.abs(sizes / centre - 1.0) < 0.15]
    mad = float(np.median(np.abs(members / centre - 1.0))) * 1.4826 if len(members) else 0.05
    return StellarLocus(r50_px=centre, scatter=max(mad, 0.02), members=len(members))


def star_score(r50: np.ndarray, snr: np.ndarray, locus: StellarLocus | None,
               flags: np.ndarray | None = None) -> np.ndarray:
    """Per-source probability-like score in [0, 1] that the source is a point source.

    The excess size ``r50 / r50_psf - 1`` is compared with its expected noise
    ``hypot(locus scatter, 1 / SNR)`` (and :data:`CONTAMINATED_SIZE_SCATTER` for sources
    ``flags`` marks APER_CONTAMINATED): within ~2 sigma of the locus scores high, beyond
    it low. Without a locus (too few bright sources) every score is NaN.
    """
    if locus is None:
        return np.full(len(r50), np.nan, dtype=np.float32)
    sigma = np.hypot(locus.scatter, 1.0 / np.clip(snr, 1.0, None))
    if flags is not None:
        sigma = np.hypot(sigma, np.where((flags & F.APER_CONTAMINATED) != 0, CONTAMINATED_SIZE_SCATTER, 0.0))
    excess = r50 / locus.r50_px - 1.0
    score = ndtr((2.0 * sigma - excess) / sigma)
    return np.where(np.isfinite(score), score, 0.5).astype(np.float32)
