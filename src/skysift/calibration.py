"""Photometric calibration: counts to AB magnitudes and microjanskys.

A header zero point ``zp_ab`` is the AB magnitude of a source giving one count in
the image: ``mag_ab = zp_ab - 2.5 log10(flux_counts)`` and
``flux_ujy = flux_counts * 10**((23.9 - zp_ab) / 2.5)`` (23.9 is the AB magnitude of
1 uJy). Supported conventions, in order:

* ``MAGZERO`` / ``MAGZPT`` / ``PHOTZP`` / ``MAGZP``: a zero point for the image's units.
* SDSS ``NMGY``: nanomaggies per count (1 nanomaggy is AB 22.5).
* HST ``PHOTFLAM`` + ``PHOTPLAM``: the AB zero point of a count rate; images in
  counts (``BUNIT`` without "/S") are divided by ``EXPTIME``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.io.fits import Header

AB_MAG_OF_1_UJY = 23.9
_LOG_TO_MAG = 2.5 / np.log(10.0)


@dataclass(frozen=True)
class ZeroPoint:
    zp_ab: float  # AB magnitude of one count in the image
    source: str  # header convention it came from


def zero_point(header: Header, exptime_s: float | None = None) -> ZeroPoint | None:
    """The AB zero point the header gives, or None when it gives none."""
    for key in ("MAGZERO", "MAGZPT", "PHOTZP", "MAGZP"):
        if key in header and _finite(header[key]):
            return ZeroPoint(float(header[key]), key)
    if "NMGY" in header and _finite(header["NMGY"]) and float(header["NMGY"]) > 0:
        return ZeroPoint(22.5 - 2.5 * np.log10(float(header["NMGY"])), "NMGY")
    if all(k in header and _finite(header[k]) and float(header[k]) > 0 for k in ("PHOTFLAM", "PHOTPLAM")):
        zp = -2.5 * np.log10(float(header["PHOTFLAM"])) - 5.0 * np.log10(float(header["PHOTPLAM"])) - 2.408
        per_second = "/S" in str(header.get("BUNIT", "ELECTRONS/S")).upper()
        if not per_second:
            if not exptime_s:
                return None
            zp += 2.5 * np.log10(exptime_s)
        return ZeroPoint(float(zp), "PHOTFLAM")
    return None


def _finite(value) -> bool:
    try:
        return bool(np.isfinite(float(value)))
    except (TypeError, ValueError):
        return False


def calibrate(flux: np.ndarray, flux_err: np.ndarray, zp: ZeroPoint | None) -> dict[str, np.ndarray]:
    """AB magnitudes and uJy fluxes with errors; NaN where uncalibrated or flux <= 0."""
    n = len(flux)
    if zp is None:
        nan = np.full(n, np.nan)
        return {"flux_ujy": nan, "flux_ujy_err": nan, "mag_ab": nan, "mag_ab_err": nan}
    scale = 10.0 ** ((AB_MAG_OF_1_UJY - zp.zp_ab) / 2.5)
    with np.errstate(divide="ignore", invalid="ignore"):
        positive = flux > 0
        mag = np.where(positive, zp.zp_ab - 2.5 * np.log10(np.where(positive, flux, 1.0)), np.nan)
        mag_err = np.where(positive, _LOG_TO_MAG * flux_err / np.where(positive, flux, 1.0), np.nan)
    return {"flux_ujy": flux * scale, "flux_ujy_err": flux_err * scale, "mag_ab": mag, "mag_ab_err": mag_err}


def magnitude(flux_counts: float, zp: ZeroPoint | None) -> float | None:
    """AB magnitude of a single flux in counts, None if uncalibrated or non-positive."""
    if zp is None or not flux_counts > 0:
        return None
    return float(zp.zp_ab - 2.5 * np.log10(flux_counts))
