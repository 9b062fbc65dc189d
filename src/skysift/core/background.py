"""Spatially varying sky background and noise (SEP's SExtractor-style mesh estimator).

The sky is estimated on a mesh of ``box_px`` cells (sigma-clipped mode per cell),
median-filtered over ``filter_px`` cells and interpolated with a bicubic spline.
Masked (NaN, BLANK) pixels do not contribute.

The spline extrapolates beyond the outermost cell centres, and there it can overshoot:
on astropy's ``m13.fits`` the RMS map went down to -2.15 along the bottom edge (608
pixels <= 0), and as the per-pixel detection threshold it let one blob swallow several
stars. The RMS map therefore has a floor, the lowest value the spline takes between the
cell centres (where it interpolates the measured cells), and is never <= 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sep

from skysift.core.masks import masked_or_none
from skysift.settings import BackgroundSettings

__all__ = ["Background", "estimate_background", "rms_floor", "subtract_sky"]


@dataclass(frozen=True)
class Background:
    """Sky model in the image's units (counts): the RMS map and global figures.

    The full-resolution level map is not kept (it costs a spline evaluation per pixel
    and a full-size array): :meth:`subtract_from` removes it in place instead.
    """

    model: sep.Background
    rms: np.ndarray  # float32 map, per-pixel 1-sigma sky noise
    global_level: float
    global_rms: float

    def subtract_from(self, data: np.ndarray) -> None:
        """Subtract the sky level from ``data`` (float32, C-contiguous) in place."""
        self.model.subfrom(data)


def estimate_background(data: np.ndarray, mask: np.ndarray | None, settings: BackgroundSettings) -> Background:
    """Estimate the background of ``data`` (native float32, NaN where masked).

    Parameters
    ----------
    data : ndarray
        Image in counts.
    mask : ndarray of bool, optional
        True where pixels must be ignored.
    settings : BackgroundSettings
        Mesh and filter sizes in pixels. The mesh is shrunk for images smaller than
        four cells so that tiny images still get a varying background.
    """
    ny, nx = data.shape
    box = max(8, min(settings.box_px, nx // 4 or 8, ny // 4 or 8))
    bkg = sep.Background(data, mask=mask, bw=box, bh=box, fw=settings.filter_px, fh=settings.filter_px)
    rms = bkg.rms(dtype=np.float32)
    np.maximum(rms, rms_floor(rms, box), out=rms)
    return Background(
        model=bkg,
        rms=rms,
        global_level=float(bkg.globalback),
        global_rms=float(bkg.globalrms),
    )


def rms_floor(rms: np.ndarray, box_px: int) -> np.float32:
    """The lowest positive value of the RMS map between the outermost mesh-cell centres.

    Inside that hull the spline interpolates measured cells; outside it extrapolates and
    may overshoot below zero. Without a positive value there (a noiseless image), the
    smallest positive float32, so that the map is still never <= 0.
    """
    half = box_px // 2
    inner = rms[half : max(half + 1, rms.shape[0] - half), half : max(half + 1, rms.shape[1] - half)]
    lowest = inner.min(initial=np.inf)  # an empty region (a tiny image) has no lowest value
    if 0 < lowest < np.inf:  # the usual case: the lowest positive value, without a mask the map's size
        return np.float32(lowest)
    positive = inner > 0  # a mask, not a copy of the map's values (a quarter of its size)
    if not positive.any():
        inner, positive = rms, rms > 0
    if not positive.any():
        return np.finfo(np.float32).tiny
    return np.float32(np.min(inner, where=positive, initial=np.inf))


def subtract_sky(data: np.ndarray, mask: np.ndarray, settings: BackgroundSettings) -> tuple[Background, np.ndarray | None]:
    """Estimate the sky of ``data`` and subtract it in place; masked pixels become 0 (empty sky).

    Returns the background and the mask to give SEP: None when no pixel is masked, as
    SEP is faster without a mask to consult.
    """
    mask = masked_or_none(mask)
    bkg = estimate_background(data, mask, settings)
    bkg.subtract_from(data)
    if mask is not None:
        data[mask] = 0.0
    return bkg, mask
