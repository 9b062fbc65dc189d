"""What a FITS header says about an observation: survey, band, wavelength, time, exposure.

Headers differ between observatories; each function here tries the common keywords
in a documented order and returns ``None`` rather than guessing when none is present.
"""

from __future__ import annotations

import math
import re
import warnings
from datetime import UTC, datetime

from astropy import units as u
from astropy.io.fits import Header
from astropy.time import Time

__all__ = [
    "BAND_WAVELENGTH_ANGSTROM",
    "EXPOSURE_KEYWORDS",
    "band_name",
    "exposure_seconds",
    "observation_time",
    "slug",
    "survey_name",
    "text_keyword",
    "wavelength_angstrom",
]

#: Effective wavelengths (Angstrom) of common broad-band filters, used when a header
#: names a band but gives no wavelength.
BAND_WAVELENGTH_ANGSTROM = {
    "u": 3560.0, "g": 4830.0, "r": 6260.0, "i": 7670.0, "z": 9100.0, "y": 10000.0,
    "U": 3650.0, "B": 4450.0, "V": 5510.0, "R": 6580.0, "I": 8060.0,
    "J": 12350.0, "H": 16620.0, "K": 21590.0, "Ks": 21590.0,
}


def _first(header: Header, *keywords: str):
    for key in keywords:
        value = header.get(key)
        if value not in (None, "") and not (isinstance(value, str) and not value.strip()):
            return value
    return None


def slug(text: str) -> str:
    """A partition-safe lower-case name: letters, digits, '-' and '_' only."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "-", text.strip()).strip("-").lower()
    return cleaned or "unknown"


def survey_name(header: Header, default: str | None = None) -> str:
    """SURVEY, else the configured default, else TELESCOP/INSTRUME/ORIGIN, else 'unknown'."""
    value = _first(header, "SURVEY")
    if value is None:
        value = default if default else _first(header, "TELESCOP", "INSTRUME", "ORIGIN")
    return slug(str(value)) if value is not None else "unknown"


def wavelength_angstrom(header: Header) -> float | None:
    """WAVELNTH (with WAVEUNIT), else HST's PHOTPLAM, else the band's effective wavelength."""
    value = _first(header, "WAVELNTH", "WAVELEN")
    if value is not None:
        try:
            unit = u.Unit(str(header.get("WAVEUNIT", "angstrom")).strip() or "angstrom")
            return float((float(value) * unit).to(u.AA).value)
        except (ValueError, TypeError):
            return None
    if _first(header, "PHOTPLAM") is not None:
        return float(header["PHOTPLAM"])
    band = _first(header, "FILTER", "BAND", "FILTNAM1")
    if band is not None:
        return BAND_WAVELENGTH_ANGSTROM.get(str(band).strip())
    return None


def band_name(header: Header) -> str:
    """FILTER/BAND/FILTNAM1, else the wavelength as e.g. '171a', else 'unknown'."""
    band = _first(header, "FILTER", "BAND", "FILTNAM1", "FILTER1")
    if band is not None:
        return slug(str(band))
    wavelength = wavelength_angstrom(header)
    if wavelength is not None:
        return f"{wavelength:g}a".replace(".", "p")
    return "unknown"


def observation_time(header: Header) -> datetime | None:
    """Start of the exposure in UTC: DATE-OBS (+TIME-OBS), DATE_OBS, else MJD-OBS.

    Both are read in the time scale TIMESYS names (UTC when it names none that astropy
    knows): the FITS standard gives every time keyword of an HDU that scale.
    """
    date = _first(header, "DATE-OBS", "DATE_OBS", "DATE-BEG")
    scale = str(header.get("TIMESYS", "utc")).strip().lower() or "utc"
    if scale not in Time.SCALES:
        scale = "utc"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if date is not None:
                text = str(date).strip()
                time_of_day = _first(header, "TIME-OBS", "UT", "UTSTART")
                if "T" not in text and time_of_day is not None:
                    text = f"{text}T{str(time_of_day).strip()}"
                when = Time(text.replace("Z", ""), format="isot" if "T" in text else None, scale=scale)
            elif _first(header, "MJD-OBS", "MJD_OBS") is not None:
                when = Time(float(_first(header, "MJD-OBS", "MJD_OBS")), format="mjd", scale=scale)
            else:
                return None
            return when.utc.to_datetime(timezone=UTC)
    except (ValueError, TypeError):
        return None


#: Exposure-time keywords in the order they are tried, and who writes them.
EXPOSURE_KEYWORDS = (
    "EXPTIME",  # the FITS convention: most optical pipelines, HST, SDSS, DES, ZTF
    "EXP_TIME",  # CASU (UKIRT WFCAM): per exposure, in the primary header of a stack
    "EXPOSURE",  # e.g. X-ray and older optical headers
    "ITIME",  # IRAF-era IR cameras (Keck NIRC2, IRTF): per coadd, times COADDS when given
    "TEXPTIME",  # HST total exposure of a combined product
)


def _positive(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # (an integer card beyond float range)
        return None
    return number if math.isfinite(number) and number > 0 else None


def exposure_seconds(header: Header) -> float | None:
    """Exposure time in seconds: the first of :data:`EXPOSURE_KEYWORDS` holding a positive number.

    ``ITIME`` is the integration of one coadd where cameras sum ``COADDS`` (or
    ``NCOADDS``) of them into the image, so it is multiplied by that count. Pass the
    primary header merged with the image extension's (as :mod:`skysift.io.fits` does):
    CASU and HST put the exposure in the primary header of a multi-extension file.
    None when no keyword holds a positive, finite number of seconds.
    """
    for key in EXPOSURE_KEYWORDS:
        seconds = _positive(header.get(key))
        if seconds is None:
            continue
        if key == "ITIME":
            seconds *= _positive(_first(header, "COADDS", "NCOADDS")) or 1.0
        return seconds
    return None


def text_keyword(header: Header, *keywords: str) -> str | None:
    value = _first(header, *keywords)
    return str(value).strip() if value is not None else None
