"""Forced photometry: flux at given sky positions in an image, detected there or not.

Used by the 'new source' alert rule to look at the earlier images themselves rather
than only their catalogs: a source that was there but blended or below the
detection threshold shows flux at its position; a true transient does not.

Each position is measured on a patch of :data:`PATCH_CELLS` x :data:`PATCH_CELLS`
background cells read around it (a section, not the whole image), with the sky and
its noise estimated on that patch by the same mesh estimator as a whole image uses.
When there are so many positions that their patches would cover half the image, an
image of up to :data:`WHOLE_READ_MAX_PIXELS` is read and its sky estimated once instead.
"""

from __future__ import annotations

import numpy as np
import sep
from astropy.wcs import WCS

from skysift.core.astrometry import sky_to_pixel
from skysift.core.background import subtract_sky
from skysift.io.fits import Sections
from skysift.settings import BackgroundSettings

#: Side of the patch read around a position, in background cells (four cells is the
#: smallest patch on which the background keeps its configured cell size).
PATCH_CELLS = 4
#: Largest image (pixels, 64 MiB of float32) read whole when positions are many; larger
#: images are always read patch by patch, so memory stays bounded whatever the image.
WHOLE_READ_MAX_PIXELS = 4096 * 4096
#: A patch more masked than this is enlarged: SEP needs unmasked cells to estimate the sky.
MAX_MASKED_FRACTION = 0.5


def _patch_bounds(centre: float, size: int, side: int) -> tuple[int, int]:
    """[start, stop) of a ``side``-pixel window around ``centre``, kept inside [0, size)."""
    start = min(max(0, int(np.rint(centre)) - side // 2), max(0, size - side))
    return start, min(size, start + side)


def _read_patch(image: Sections, x: float, y: float, side: int) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]:
    """The patch around (x, y), doubled in size while more than half of it is masked (the
    sky needs unmasked cells to be estimated from), up to the whole image."""
    ny, nx = image.shape
    while True:
        box = (*_patch_bounds(y, ny, side), *_patch_bounds(x, nx, side))
        data, mask = image.read(*box)
        if mask.mean() <= MAX_MASKED_FRACTION or (box[1] - box[0] == ny and box[3] - box[2] == nx):
            return box, data, mask
        side *= 2


def forced_snr(uri: str, hdu: int | str | None, wcs: WCS, ra_deg: np.ndarray, dec_deg: np.ndarray,
               radius_px: float, background: BackgroundSettings) -> np.ndarray:
    """SNR of the background-subtracted flux in circles of ``radius_px`` at each position.

    ``wcs`` is the image's WCS. Positions off the image (or on masked pixels only) get NaN.
    """
    x, y = sky_to_pixel(wcs, ra_deg, dec_deg)
    snr = np.full(len(x), np.nan)
    side = PATCH_CELLS * background.box_px
    with Sections(uri, hdu) as image:
        ny, nx = image.shape
        inside = np.flatnonzero((x >= 0) & (y >= 0) & (x <= nx - 1) & (y <= ny - 1))
        if inside.size * side * side >= nx * ny // 2 and nx * ny <= WHOLE_READ_MAX_PIXELS:
            # the patches would cover half of a modest image: read it once instead
            patches = [((0, ny, 0, nx), *image.read(0, ny, 0, nx), inside)]
        else:
            patches = ((*_read_patch(image, x[k], y[k], side), [k]) for k in inside)
        for (y0, _, x0, _), data, mask, chosen in patches:
            if mask.all():
                continue
            bkg, mask = subtract_sky(data, mask, background)
            flux, err, flag = sep.sum_circle(data, x[chosen] - x0, y[chosen] - y0, radius_px, err=bkg.rms, mask=mask, subpix=5)
            with np.errstate(divide="ignore", invalid="ignore"):
                snr[chosen] = np.where((err > 0) & ((flag & sep.APER_ALLMASKED) == 0), flux / err, np.nan)
    return snr
