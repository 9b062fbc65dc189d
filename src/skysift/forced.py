"""Forced photometry: flux at given sky positions in an image, detected there or not.

Used by the 'new source' alert rule to look at the earlier images themselves rather
than only their catalogs: a source that was there but blended or below the
detection threshold shows flux at its position; a true transient does not.
"""

from __future__ import annotations

import numpy as np
import sep

from .astrometry import sky_to_pixel
from .background import subtract_sky
from .fitsio import read_image
from .settings import BackgroundSettings


def forced_snr(uri: str, hdu: int | None, ra_deg: np.ndarray, dec_deg: np.ndarray, radius_px: float,
               background: BackgroundSettings) -> np.ndarray:
    """SNR of the background-subtracted flux in circles of ``radius_px`` at each position.

    Positions off the image (or on masked pixels only) get NaN.
    """
    image = read_image(uri, hdu)
    data = image.data
    bkg, mask = subtract_sky(data, image.mask, background)
    x, y = sky_to_pixel(image.wcs, ra_deg, dec_deg)
    ny, nx = data.shape
    inside = (x >= 0) & (y >= 0) & (x <= nx - 1) & (y <= ny - 1)
    snr = np.full(len(x), np.nan)
    if inside.any():
        flux, err, flag = sep.sum_circle(data, x[inside], y[inside], radius_px, err=bkg.rms, mask=mask, subpix=5)
        with np.errstate(divide="ignore", invalid="ignore"):
            snr[inside] = np.where((err > 0) & ((flag & sep.APER_ALLMASKED) == 0), flux / err, np.nan)
    return snr
