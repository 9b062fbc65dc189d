"""Photometric calibration: counts to AB magnitudes and microjanskys.

A zero point ``zp_ab`` is the AB magnitude of a source giving one unit of the image
(one count, for most images) in total: ``mag_ab = zp_ab - 2.5 log10(flux)`` and
``flux_ujy = flux * 10**((23.9 - zp_ab) / 2.5)`` (23.9 is the AB magnitude of 1 uJy).
Headers state zero points in several conventions, and the same keyword can mean
different things (a Vega zero point for one count per second, an AB zero point for one
count). :func:`zero_point` recognises the convention from the header (the primary
header merged with the image extension's, as :mod:`skysift.io.fits` builds it) and
converts it; where a convention is recognised but cannot be completed (no exposure time
for a per-second zero point, no Vega-to-AB offset for the band) the zero point is null,
with the reason in :attr:`ZeroPoint.source`, rather than a plausible wrong number.
In order of precedence:

* ``MAGZERO``, ``MAGZP``, ``PHOTZP``: AB zero point for the image's units (DES,
  ZTF, ESO Phase 3, skysift's synthetic skies). ``PHOTSYS`` (ESO) other than ``AB``
  makes it a zero point in another system: null.
* ``MAGZPT`` from CASU (``EXTINCT`` in the header, or ``INSTRUME`` a CASU camera):
  a Vega zero point for one count per second at airmass 1 (Hodgkin et al. 2009):
  ``zp_ab = MAGZPT + 2.5 log10(t_exp) - EXTINCT (X - 1) + (AB - Vega)``, with the
  exposure from :func:`skysift.core.metadata.exposure_seconds` (CASU writes ``EXP_TIME`` in
  the primary header), the airmass ``X`` from ``AIRMASS`` or the mean of ``AMSTART``
  and ``AMEND`` (no extinction term when none is given), and AB - Vega for UKIRT WFCAM's
  ZYJHK from Hewett et al. (2006) (:data:`WFCAM_AB_MINUS_VEGA`). Other CASU cameras
  and WFCAM's narrow bands: null. ``MAGZPT`` without CASU's marks: as ``MAGZERO``.
* SDSS: an image in nanomaggies (``BUNIT`` says so, as every SDSS frame's does) has
  ``zp_ab = 22.5``; ``NMGY`` (nanomaggies per count) calibrates an image in counts.
* HST ``PHOTFLAM`` + ``PHOTPLAM``: ``-2.5 log10(PHOTFLAM) - 5 log10(PHOTPLAM) - 2.408``
  is the AB zero point of one unit per second; an image in counts or electrons
  (``BUNIT`` without "/S") adds ``2.5 log10(EXPTIME)``; without ``BUNIT``: null.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.io.fits import Header

from skysift.core.metadata import exposure_seconds

__all__ = [
    "AB_KEYWORDS",
    "AB_MAG_OF_1_NANOMAGGY",
    "AB_MAG_OF_1_UJY",
    "CASU_INSTRUMENTS",
    "WFCAM_AB_MINUS_VEGA",
    "ZeroPoint",
    "calibrate",
    "magnitude",
    "zero_point",
]

AB_MAG_OF_1_UJY = 23.9
AB_MAG_OF_1_NANOMAGGY = 22.5
_LOG_TO_MAG = 2.5 / np.log(10.0)

#: AB minus Vega magnitude of UKIRT WFCAM's broad bands (Hewett et al. 2006, MNRAS 367, 454).
WFCAM_AB_MINUS_VEGA = {"Z": 0.528, "Y": 0.634, "J": 0.938, "H": 1.379, "K": 1.900}
#: ``INSTRUME`` of cameras whose images CASU calibrates (``MAGZPT`` per second, Vega):
#: UKIRT WFCAM, VISTA VIRCAM and the INT Wide Field Camera.
CASU_INSTRUMENTS = ("WFCAM", "VIRCAM", "WFC")
#: Keywords of an AB zero point for the image's own units.
AB_KEYWORDS = ("MAGZERO", "MAGZP", "PHOTZP")
_COUNT_UNITS = ("count", "counts", "dn", "adu", "adus", "data number")


@dataclass(frozen=True)
class ZeroPoint:
    """A header's zero point in skysift's convention, or why it cannot be used."""

    zp_ab: float | None  # AB magnitude of one image unit; None when the header's cannot be converted
    source: str  # the convention and keywords it came from, or the reason it is null


def zero_point(header: Header, exptime_s: float | None = None) -> ZeroPoint | None:
    """The AB zero point the header gives (see the module docstring), None when it gives none.

    Parameters
    ----------
    header : Header
        The image's header merged over its file's primary header.
    exptime_s : float, optional
        Exposure time (s); by default :func:`skysift.core.metadata.exposure_seconds` of ``header``.
    """
    if exptime_s is None:
        exptime_s = exposure_seconds(header)
    for key in AB_KEYWORDS:
        if _number(header.get(key)) is not None:
            return _in_photsys(header, key, _number(header[key]))
    if _number(header.get("MAGZPT")) is not None:
        if "EXTINCT" in header or _text(header, "INSTRUME").upper() in CASU_INSTRUMENTS:
            return _casu(header, exptime_s)
        return _in_photsys(header, "MAGZPT", _number(header["MAGZPT"]))
    bunit = _text(header, "BUNIT").lower()
    if "nanomagg" in bunit or "nmgy" in bunit:
        return ZeroPoint(AB_MAG_OF_1_NANOMAGGY, "BUNIT nanomaggy (SDSS): 1 nanomaggy is AB 22.5")
    if _positive(header.get("NMGY")) is not None:
        if bunit not in _COUNT_UNITS:
            return ZeroPoint(None, "NMGY (SDSS nanomaggies per count), but BUNIT does not say the image is in "
                                   "counts or in nanomaggies")
        return ZeroPoint(AB_MAG_OF_1_NANOMAGGY - 2.5 * np.log10(_positive(header["NMGY"])), "NMGY (SDSS), BUNIT counts")
    if _positive(header.get("PHOTFLAM")) is not None and _positive(header.get("PHOTPLAM")) is not None:
        return _hst(header, bunit, exptime_s)
    return None


def _casu(header: Header, exptime_s: float | None) -> ZeroPoint:
    """CASU's MAGZPT: Vega, one count per second, airmass 1."""
    instrument = _text(header, "INSTRUME").upper()
    band = _text(header, "FILTER").upper()
    what = f"MAGZPT (CASU {instrument or 'camera'} {band or '?'}: Vega, counts per second)"
    offset = WFCAM_AB_MINUS_VEGA.get(band) if instrument == "WFCAM" else None
    if offset is None:
        return ZeroPoint(None, f"{what}: no AB - Vega offset known for this camera and band")
    if exptime_s is None:
        return ZeroPoint(None, f"{what}: no exposure time (EXPTIME, EXP_TIME, ...) to scale it to counts")
    extinction = _number(header.get("EXTINCT")) or 0.0
    airmass = _airmass(header)
    zp = float(_number(header["MAGZPT"])) + 2.5 * np.log10(exptime_s) + offset
    detail = f"exposure {exptime_s:g} s, AB - Vega {offset:.3f}"
    if airmass is not None:
        zp -= extinction * (airmass - 1.0)
        detail += f", EXTINCT {extinction:g} at airmass {airmass:.3f}"
    elif extinction:
        detail += ", airmass unknown: no extinction term"
    return ZeroPoint(float(zp), f"{what}; {detail}")


def _hst(header: Header, bunit: str, exptime_s: float | None) -> ZeroPoint:
    """STScI's AB zero point of one unit per second, scaled to the image's units."""
    zp = -2.5 * np.log10(_positive(header["PHOTFLAM"])) - 5.0 * np.log10(_positive(header["PHOTPLAM"])) - 2.408
    if not bunit:
        return ZeroPoint(None, "PHOTFLAM (HST), but no BUNIT to say whether the image is a rate or counts")
    if "/s" in bunit.replace(" ", ""):
        return ZeroPoint(float(zp), f"PHOTFLAM + PHOTPLAM (HST), BUNIT {bunit.upper()}")
    if exptime_s is None:
        return ZeroPoint(None, f"PHOTFLAM (HST) for a rate, BUNIT {bunit.upper()}, but no exposure time")
    return ZeroPoint(float(zp + 2.5 * np.log10(exptime_s)),
                     f"PHOTFLAM + PHOTPLAM (HST), BUNIT {bunit.upper()}, exposure {exptime_s:g} s")


def _in_photsys(header: Header, key: str, value: float) -> ZeroPoint:
    system = _text(header, "PHOTSYS").upper()
    if system and system != "AB":
        return ZeroPoint(None, f"{key} is in the {system} system (PHOTSYS), not AB")
    return ZeroPoint(float(value), key)


def _airmass(header: Header) -> float | None:
    if _positive(header.get("AIRMASS")) is not None:
        return _positive(header["AIRMASS"])
    ends = [v for v in (_positive(header.get("AMSTART")), _positive(header.get("AMEND"))) if v is not None]
    return float(np.mean(ends)) if ends else None


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # (an integer card beyond float range)
        return None
    return number if np.isfinite(number) else None


def _positive(value) -> float | None:
    number = _number(value)
    return number if number is not None and number > 0 else None


def _text(header: Header, key: str) -> str:
    value = header.get(key)
    return str(value).strip() if isinstance(value, str) else ""


def calibrate(flux: np.ndarray, flux_err: np.ndarray, zp: ZeroPoint | None) -> dict[str, np.ndarray]:
    """AB magnitudes and uJy fluxes with errors; NaN where uncalibrated or flux <= 0."""
    n = len(flux)
    if zp is None or zp.zp_ab is None:
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
    if zp is None or zp.zp_ab is None or not flux_counts > 0:
        return None
    return float(zp.zp_ab - 2.5 * np.log10(flux_counts))
