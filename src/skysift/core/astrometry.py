"""Pixel to sky: RA/Dec (ICRS) with SIP distortion, HEALPix indices, image footprints,
and whether a header's WCS can be trusted at all.

Positions are computed with ``WCS.all_pix2world`` (which applies SIP and lookup-table
distortions) at origin 0, so that pixel coordinates are 0-based throughout skysift.
Frames other than ICRS (FK5, galactic, ...) are converted to ICRS.

astropy reads a broken WCS without complaint more often than not: a string where a
number belongs becomes 0, a singular CD matrix maps the whole image onto one line, an
AIPS projection code is quietly rewritten. :func:`validate_celestial_wcs` decides
whether the transform is what the header means; when it is not, an image's sky
positions are null (with the reason), never a plausible-looking wrong number.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from astropy import units as u
from astropy.coordinates import ICRS, SkyCoord, angular_separation
from astropy.io.fits.verify import VerifyError, VerifyWarning
from astropy.utils.exceptions import AstropyDeprecationWarning, AstropyWarning
from astropy.wcs import WCS, FITSFixedWarning, NoConvergence
from astropy.wcs.utils import proj_plane_pixel_scales, wcs_to_celestial_frame
from astropy_healpix import HEALPix

__all__ = [
    "GRID_POINTS",
    "HARMLESS_FIXES",
    "HEALPIX_ORDER",
    "ROUND_TRIP_TOLERANCE_PX",
    "Footprint",
    "ParsedWcs",
    "WcsCheck",
    "WcsStatus",
    "footprint",
    "healpix_index",
    "names_celestial_axes",
    "pixel_scale_arcsec",
    "pixel_to_sky",
    "read_wcs",
    "sky_to_pixel",
    "validate_celestial_wcs",
]

#: HEALPix order of the ``healpix`` column: nested, nside = 2**16 (cells of ~3.2 arcsec).
#: A coarser nested index is ``healpix >> (2 * (HEALPIX_ORDER - k))`` for order k.
HEALPIX_ORDER = 16
_HEALPIX = HEALPix(nside=2**HEALPIX_ORDER, order="nested", frame=ICRS())


@dataclass(frozen=True)
class Footprint:
    """Where an image lies on the sky (degrees, ICRS)."""

    corners_ra: list[float]
    corners_dec: list[float]
    center_ra: float
    center_dec: float
    radius_deg: float  # from the centre to the farthest corner
    pixel_scale_arcsec: float


def pixel_to_sky(wcs: WCS, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ICRS RA and Dec in degrees for 0-based pixel positions."""
    if len(x) == 0:
        return np.zeros(0), np.zeros(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        lon, lat = wcs.all_pix2world(np.asarray(x, float), np.asarray(y, float), 0)
        frame = wcs_to_celestial_frame(wcs)
        if not isinstance(frame, ICRS):
            coords = SkyCoord(lon * u.deg, lat * u.deg, frame=frame).icrs
            lon, lat = coords.ra.deg, coords.dec.deg
    return np.mod(np.asarray(lon, float), 360.0), np.asarray(lat, float)


def sky_to_pixel(wcs: WCS, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """0-based pixel positions of ICRS RA/Dec (degrees)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        frame = wcs_to_celestial_frame(wcs)
        lon, lat = np.asarray(ra, float), np.asarray(dec, float)
        if not isinstance(frame, ICRS):
            coords = SkyCoord(lon * u.deg, lat * u.deg, frame="icrs").transform_to(frame)
            lon, lat = coords.spherical.lon.deg, coords.spherical.lat.deg
        x, y = wcs.all_world2pix(lon, lat, 0, quiet=True)
    return np.asarray(x), np.asarray(y)


def pixel_scale_arcsec(wcs: WCS) -> float:
    """Mean pixel scale at the reference pixel, arcsec per pixel."""
    return float(np.mean(proj_plane_pixel_scales(wcs.celestial)) * 3600.0)


def healpix_index(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    """Nested HEALPix index at :data:`HEALPIX_ORDER` (int64)."""
    if len(ra_deg) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.asarray(_HEALPIX.lonlat_to_healpix(np.asarray(ra_deg) * u.deg, np.asarray(dec_deg) * u.deg), dtype=np.int64)


def footprint(wcs: WCS, nx: int, ny: int) -> Footprint:
    """Corners, centre and radius of an ``nx`` x ``ny`` image."""
    xs = np.array([-0.5, nx - 0.5, nx - 0.5, -0.5])
    ys = np.array([-0.5, -0.5, ny - 0.5, ny - 0.5])
    ra, dec = pixel_to_sky(wcs, xs, ys)
    cra, cdec = pixel_to_sky(wcs, np.array([(nx - 1) / 2.0]), np.array([(ny - 1) / 2.0]))
    center = SkyCoord(cra[0] * u.deg, cdec[0] * u.deg)
    radius = center.separation(SkyCoord(ra * u.deg, dec * u.deg)).deg.max()
    return Footprint(
        corners_ra=[float(v) for v in ra],
        corners_dec=[float(v) for v in dec],
        center_ra=float(cra[0]),
        center_dec=float(cdec[0]),
        radius_deg=float(radius),
        pixel_scale_arcsec=pixel_scale_arcsec(wcs),
    )


# -- can this WCS be trusted? ----------------------------------------------------------------

#: A pixel taken to the sky and back must land this close (pixels) to where it started.
ROUND_TRIP_TOLERANCE_PX = 0.01
#: Points per side of the grid on which the transform must give finite positions.
GRID_POINTS = 9

#: wcslib fixes that leave the celestial transform as the header wrote it: dates
#: (datfix), the observatory's position (obsfix) and spectral axis types (spcfix).
#: Every other fix changes it: unitfix rescales axes whose units are not degrees
#: (:func:`read_wcs` has already respelled the degree spellings it would translate),
#: celfix rewrites AIPS NCP/GLS projections as SIN/SFL on assumptions the header does not
#: state, cylfix moves the reference point of a malformed cylindrical projection, and
#: cdfix puts a 1 (one degree per pixel) on the diagonal of a CD matrix that misses an axis.
HARMLESS_FIXES = frozenset({"datfix", "obsfix", "spcfix"})
_FIX_WORDS = {
    "unitfix": "rescaled axes whose units are not degrees",
    "celfix": "translated an AIPS NCP/GLS projection",
    "cylfix": "moved the reference point of a malformed cylindrical projection",
    "cdfix": "put 1 (one degree per pixel) on the diagonal of a CD matrix missing an axis",
}

_DEGREES = frozenset({"", "deg", "degree", "degrees"})
#: A CTYPE naming a celestial axis (wcslib's rule on its first characters), however the
#: rest of it is written: RA/DEC, xLON/xLAT, xyLN/xyLT.
_CELESTIAL_CTYPE = re.compile(r"(RA|DEC|[A-Z]LON|[A-Z]LAT|[A-Z]{2}LN|[A-Z]{2}LT)(-|$)")
#: Numeric keywords of the primary (unlettered) WCS that enter the pixel-to-sky transform.
_NUMERIC_KEY = re.compile(
    r"(CRVAL|CRPIX|CDELT|CROTA)[12]|(CD|PC)[12]_[12]|PV[12]_\d+|LONPOLE|LATPOLE|EQUINOX|EPOCH"
    r"|(A|B|AP|BP)_(\d+_\d+|ORDER)"
)
_TRANSFORM_KEY = re.compile(_NUMERIC_KEY.pattern + r"|(CTYPE|CUNIT)[12]|RADESYS|RADECSYS|WCSAXES")
#: astropy's warning for a wcslib fix ("'celfix' made the change 'Success'.").
_FIX_NOTE = re.compile(r"'(?P<fix>\w+)' made the change '(?P<change>.*)'\.?$", re.S)
#: wcslib's warning for a card it could not read: the card, a newline, the reason.
_CARD_NOTE = re.compile(r"(?P<card>(?P<key>[A-Z0-9_-]{1,8})\s*=[^\n]*)\n\s*(?P<why>.*)", re.S)


class WcsKind(StrEnum):
    """``images.wcs_kind``: what the header's first two axes are (:func:`skysift.io.fits.wcs_kind`)."""

    CELESTIAL = "celestial"  # sky axes (RA/Dec, galactic...), even when the WCS itself is broken
    HELIOPROJECTIVE = "helioprojective"  # solar images (HPLN/HPLT): indexed, not catalogued
    NONE = "none"  # no WCS, or axes that are not on a sky (a lab frame)


class WcsStatus(StrEnum):
    """``images.wcs_status``: whether an image's sky positions can be trusted."""

    VALID = "valid"
    INVALID = "wcs_invalid"  # the header means sky axes, but its WCS is broken: RA/Dec null
    NONE = "none"  # no celestial axes at all (helioprojective, or no WCS)


@dataclass(frozen=True)
class WcsCheck:
    """The verdict on an image's celestial WCS, and the reason in words when it is not valid."""

    status: WcsStatus
    message: str | None = None

    @property
    def valid(self) -> bool:
        return self.status is WcsStatus.VALID


@dataclass(frozen=True)
class ParsedWcs:
    """What astropy made of a header: the 2-D WCS (None when it refused, with ``error``),
    and the warnings it gave that mean the WCS is not what the header says (``problems``)."""

    wcs: WCS | None
    problems: tuple[str, ...] = ()
    error: str | None = None


def names_celestial_axes(header) -> bool:
    """Whether CTYPE1 or CTYPE2 names a celestial axis, however malformed the rest is:
    such an image is meant to be on the sky, so it is measured even if its WCS is broken."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)  # a malformed card is fixed on reading, with a warning
        return any(_CELESTIAL_CTYPE.match(str(_value(header, f"CTYPE{i}", "")).strip().upper()) for i in (1, 2))


def read_wcs(header) -> ParsedWcs:
    """The 2-D WCS (SIP included) astropy reads from ``header``, and what went wrong doing so.

    CUNIT values that spell degrees in other ways ('DEG', 'degrees') are read as 'deg':
    the standard's unit for celestial axes, which astropy would otherwise refuse here.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        header = _degrees_spelled_deg(header)
        try:
            wcs = WCS(header, naxis=2, relax=True)
        except Exception as exc:  # astropy raises many types for broken WCS keywords
            return ParsedWcs(None, _problems(caught), _reason(exc))
    return ParsedWcs(wcs, _problems(caught))


def validate_celestial_wcs(wcs: WCS | None, header, shape: tuple[int, int], *,
                           min_scale_arcsec: float, max_scale_arcsec: float,
                           parsed: ParsedWcs | None = None) -> WcsCheck:
    """Whether ``wcs`` (built from ``header`` for an image of ``shape`` = (ny, nx)) gives
    the sky positions the header means.

    Not valid when: a transform keyword (CRVAL, CRPIX, CDELT, CROTA, CD, PC, PV, SIP, ...)
    is not a finite number; celestial units are not degrees; SIP coefficients come without
    '-SIP' in CTYPE; astropy cannot read the WCS (unknown projection, singular matrix, ...)
    or had to change it to read it (see :data:`HARMLESS_FIXES`); the frame is unknown; the
    CD/PC matrix is singular; the pixel scale lies outside [``min_scale_arcsec``,
    ``max_scale_arcsec``] (arcsec/pixel) at the reference pixel or on the sky at the image
    centre; some pixel of the image has no finite sky position; or a corner or the centre
    does not come back within :data:`ROUND_TRIP_TOLERANCE_PX` from the sky.
    Status ``none`` when the header names no celestial axes. The plausible scales are
    settings (:class:`~skysift.settings.WcsSettings`). ``parsed`` is :func:`read_wcs` of ``header``
    when the caller has it (the header is then not parsed again).
    """
    if wcs is None and not names_celestial_axes(header):
        return WcsCheck(WcsStatus.NONE, "the header names no celestial axes")
    parsed = read_wcs(header) if parsed is None else parsed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)  # malformed cards: their values are judged here
        warnings.simplefilter("ignore", RuntimeWarning)  # NaN and overflow: judged from the values
        problem = (_value_problem(header)
                   or (f"astropy cannot read the WCS: {parsed.error}" if parsed.error else None)
                   or _convention_problem(header)
                   or next(iter(parsed.problems), None))
        if problem is None:
            try:
                problem = _transform_problem(wcs if wcs is not None else parsed.wcs, shape,
                                             min_scale_arcsec, max_scale_arcsec)
            except Exception as exc:  # wcslib raises many types where a transform breaks down
                problem = f"the transform fails: {_reason(exc)}"
    return WcsCheck(WcsStatus.INVALID, problem) if problem else WcsCheck(WcsStatus.VALID)


def _value(header, key: str, default=None):
    """``header.get(key, default)``; for a card astropy cannot parse (``CRVAL1 = NaN``), its raw value text."""
    try:
        return header.get(key, default)
    except VerifyError:
        return header.cards[key].image[10:].strip()


def _degrees_spelled_deg(header):
    """``header``, with CUNIT1/2 'deg' where they spell degrees another way (a copy if so)."""
    respelled = None
    for key in ("CUNIT1", "CUNIT2"):
        unit = _value(header, key)
        if isinstance(unit, str) and unit != "deg" and unit.strip().lower() in _DEGREES - {""}:
            respelled = respelled or header.copy()
            respelled[key] = "deg"
    return respelled or header


def _reason(exc: Exception) -> str:
    """The words of an astropy/wcslib exception, without wcslib's 'ERROR n in f() at line' lines."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip() and not line.startswith("ERROR ")]
    return lines[0] if lines else type(exc).__name__


def _problems(caught: list[warnings.WarningMessage]) -> tuple[str, ...]:
    found = (_warning_problem(w.category, str(w.message)) for w in caught)
    return tuple(p for p in found if p)


def _warning_problem(category: type[Warning], text: str) -> str | None:
    """What a warning astropy gave while reading a WCS says is wrong with it, or None."""
    if not issubclass(category, AstropyWarning) or issubclass(category, (VerifyWarning, AstropyDeprecationWarning)):
        return None  # card syntax (the values are checked on their own) and deprecations change nothing
    if text.startswith("The following header keyword is invalid"):
        return None  # a malformed card: wcslib says what it means for the WCS, if anything
    one_line = " ".join(text.split())
    if not issubclass(category, FITSFixedWarning):
        return one_line  # e.g. a distortion astropy does not implement, left out
    if fix := _FIX_NOTE.match(text):
        if fix["fix"] in HARMLESS_FIXES:
            return None
        words = _FIX_WORDS.get(fix["fix"], "changed it")
        return f"astropy had to change the WCS to read it: {fix['fix']} {words} ({' '.join(fix['change'].split())})"
    if text.startswith(("Removed redundant", "The WCS transformation has more axes")):
        return None  # SIP and PV describing the same distortion; axes beyond the two read
    if card := _CARD_NOTE.match(text):
        if not _TRANSFORM_KEY.fullmatch(card["key"]) or "deprecated" in card["why"]:
            return None
        return f"astropy could not read {' '.join(card['card'].split())}: {' '.join(card['why'].split())}"
    return one_line


def _value_problem(header) -> str | None:
    """The first transform keyword whose value is not a finite number, in words."""
    for key in header:
        if _NUMERIC_KEY.fullmatch(key):
            value = _value(header, key)
            if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
                return f"{key} = {value!r} is not a finite number"
    return None


def _convention_problem(header) -> str | None:
    """What the header leaves to defaults or to guesswork that changes the transform, in words."""
    for key in ("CUNIT1", "CUNIT2"):
        unit = _value(header, key)
        if unit is not None and str(unit).strip().lower() not in _DEGREES:
            return f"{key} = {unit!r}: celestial axes are in degrees (FITS WCS paper II)"
    missing = [key for key in ("CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2") if key not in header]
    if missing:
        return f"the header gives no {', '.join(missing)}: astropy would take 0"
    if not any(f"CD{i}_{j}" in header for i in (1, 2) for j in (1, 2)) and not ("CDELT1" in header and "CDELT2" in header):
        return "the header gives no pixel scale (no CDi_j, or not both CDELT1 and CDELT2): astropy would take one degree per pixel"
    cd_keys = [f"CD{i}_{j}" for i in (1, 2) for j in (1, 2)]
    if any(k in header for k in cd_keys) and any(f"PC{i}_{j}" in header for i in (1, 2) for j in (1, 2)):
        cd = np.array([header.get(k, 0.0) for k in cd_keys], dtype=float).reshape(2, 2)
        pc = np.array([header.get(f"PC{i}_{j}", float(i == j)) for i in (1, 2) for j in (1, 2)], dtype=float).reshape(2, 2)
        scaled = pc * np.array([[header.get("CDELT1", 1.0)], [header.get("CDELT2", 1.0)]], dtype=float)
        if not np.allclose(cd, scaled, rtol=1e-9, atol=0.0):
            return "the header gives both CDi_j and PCi_j/CDELTi, and they disagree: which one applies is ambiguous"
    ctypes = [str(_value(header, f"CTYPE{i}", "")).strip().upper() for i in (1, 2)]
    if ("A_ORDER" in header or "B_ORDER" in header) and not all(c.endswith(("-SIP", "-TPV")) for c in ctypes):
        return (f"SIP coefficients with CTYPE {ctypes[0]!r}/{ctypes[1]!r} (no '-SIP'): "
                "whether the distortion applies is ambiguous")
    return None


def _transform_problem(wcs: WCS | None, shape: tuple[int, int], min_scale: float, max_scale: float) -> str | None:
    """What is wrong with the transform itself over an image of ``shape``, or None."""
    if wcs is None or not wcs.has_celestial:
        return "astropy finds no celestial axes in CTYPE1/CTYPE2"
    for axis in (wcs.wcs.lng, wcs.wcs.lat):
        ctype = wcs.wcs.ctype[axis]
        if len(ctype) < 8 or ctype[4] != "-":
            return f"CTYPE{axis + 1} = {ctype!r} names no projection"
    try:
        wcs_to_celestial_frame(wcs)
    except ValueError as exc:
        return f"unknown celestial frame: {_reason(exc)}"
    matrix = wcs.celestial.pixel_scale_matrix
    if not (np.isfinite(matrix).all() and np.isfinite(wcs.wcs.crval).all() and np.isfinite(wcs.wcs.crpix).all()):
        return "CRVAL, CRPIX or the CD/PC matrix is not finite"
    scales = np.linalg.svd(matrix, compute_uv=False) * 3600.0  # arcsec/pixel, largest first
    if scales[1] <= scales[0] * 1e-6:
        return f"the CD/PC matrix is singular: it maps the image onto a line (scales {scales[0]:.3g} and {scales[1]:.3g} arcsec/pixel)"
    if problem := _scale_problem(scales, "at the reference pixel", min_scale, max_scale):
        return problem
    ny, nx = shape
    gx, gy = np.meshgrid(np.linspace(-0.5, nx - 0.5, GRID_POINTS), np.linspace(-0.5, ny - 0.5, GRID_POINTS))
    lon, lat = wcs.all_pix2world(gx.ravel(), gy.ravel(), 0)
    undefined = ~(np.isfinite(lon) & np.isfinite(lat))
    if undefined.any():
        i = np.flatnonzero(undefined)[0]
        return f"no sky position for pixel ({gx.ravel()[i]:.1f}, {gy.ravel()[i]:.1f}): the projection does not cover the image"
    cx, cy = (nx - 1) / 2.0, (ny - 1) / 2.0
    lon, lat = np.deg2rad(wcs.all_pix2world([cx, cx + 1.0, cx], [cy, cy, cy + 1.0], 0))
    steps = np.rad2deg(angular_separation(lon[0], lat[0], lon[1:], lat[1:])) * 3600.0
    if problem := _scale_problem(np.sort(steps)[::-1], "on the sky at the image centre", min_scale, max_scale):
        return problem
    px = np.array([-0.5, nx - 0.5, nx - 0.5, -0.5, cx])
    py = np.array([-0.5, -0.5, ny - 0.5, ny - 0.5, cy])
    lon, lat = wcs.all_pix2world(px, py, 0)
    try:
        bx, by = wcs.all_world2pix(lon, lat, 0, tolerance=1e-5, maxiter=100, quiet=False)
    except NoConvergence:
        return "the distortion cannot be inverted: sky positions do not lead back to pixels"
    miss = np.hypot(np.asarray(bx) - px, np.asarray(by) - py)
    if not (miss <= ROUND_TRIP_TOLERANCE_PX).all():
        i = int(np.argmax(np.where(np.isfinite(miss), miss, np.inf)))
        return (f"pixel ({px[i]:.1f}, {py[i]:.1f}) goes to the sky and back to {miss[i]:.3g} px away "
                f"(more than {ROUND_TRIP_TOLERANCE_PX:g}): the transform does not invert")
    return None


def _scale_problem(scales: np.ndarray, where: str, min_scale: float, max_scale: float) -> str | None:
    """Scales (arcsec/pixel, largest first) outside the plausible range, in words."""
    if not scales[0] <= max_scale:
        return f"pixel scale {scales[0]:.3g} arcsec/pixel {where} is implausible (more than {max_scale:g})"
    if not scales[-1] >= min_scale:
        return f"pixel scale {scales[-1]:.3g} arcsec/pixel {where} is implausible (less than {min_scale:g})"
    return None
