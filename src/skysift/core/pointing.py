"""Where an image points, from its header's linear WCS keywords alone: a disc on the sky.

Cheap enough to ask of every file of a run before any is measured (no WCS is parsed),
and an estimate: the disc is centred on the image's centre and reaches its corners as a
gnomonic (TAN) projection of the header's CRVAL, CRPIX and CD (or PC and CDELT) places them,
widened by :data:`DISC_MARGIN`. Distortions (SIP, TPV) and other projections move a corner
by a small part of that; what needs exact footprints reads them from the measured image
(:func:`skysift.core.astrometry.footprint`).

A survey run uses it to know, before measuring, which of its images another image of the
run may overlap (:func:`overlapping`): those are the ones whose sky the alert phase will
ask for again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.coordinates import angular_separation  # Vincenty's formula, radians in and out

__all__ = ["DISC_MARGIN", "SkyDisc", "header_disc", "overlapping"]

#: Each disc is widened by this fraction of its radius (distortions, other projections).
DISC_MARGIN = 0.05
#: Longitude/latitude CTYPE prefixes of one celestial frame each: discs of two frames are never compared.
_FRAMES = {("RA--", "DEC-"): "equatorial", ("GLON", "GLAT"): "galactic", ("ELON", "ELAT"): "ecliptic"}


@dataclass(frozen=True)
class SkyDisc:
    """A disc on the sky (degrees) in one celestial frame that holds a whole image."""

    frame: str
    ra_deg: float
    dec_deg: float
    radius_deg: float


def _number(header, key: str, default: float | None) -> float | None:
    value = header.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _pixel_to_world_matrix(header) -> np.ndarray | None:
    """Degrees of intermediate world coordinates per pixel: CD, else PC times CDELT."""
    if any(f"CD{i}_{j}" in header for i in (1, 2) for j in (1, 2)):
        values = [_number(header, f"CD{i}_{j}", 0.0) for i in (1, 2) for j in (1, 2)]
        return None if None in values else np.array(values).reshape(2, 2)
    pc = [_number(header, f"PC{i}_{j}", 1.0 if i == j else 0.0) for i in (1, 2) for j in (1, 2)]
    cdelt = [_number(header, f"CDELT{i}", None) for i in (1, 2)]
    if None in pc or None in cdelt:
        return None
    return np.array(cdelt)[:, None] * np.array(pc).reshape(2, 2)


def _deproject(ra0: float, dec0: float, xi: np.ndarray, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sky positions (radians) of gnomonic intermediate coordinates (radians) around (ra0, dec0)."""
    denominator = np.cos(dec0) - eta * np.sin(dec0)
    ra = ra0 + np.arctan2(xi, denominator)
    dec = np.arctan2(np.sin(dec0) + eta * np.cos(dec0), np.hypot(xi, denominator))
    return ra, dec


def header_disc(header) -> SkyDisc | None:
    """The disc that holds a 2-D image whose header has sky axes 1 and 2 in degrees (see the
    module's docstring); None when it has not, or its keywords make no finite disc under 90 deg."""
    frame = _FRAMES.get((str(header.get("CTYPE1", ""))[:4], str(header.get("CTYPE2", ""))[:4]))
    units = {str(header.get(f"CUNIT{i}", "deg")).strip().lower() for i in (1, 2)}
    if frame is None or not units <= {"deg", ""}:
        return None
    naxis = "ZNAXIS" if header.get("ZIMAGE") is True else "NAXIS"  # a tile-compressed image's own axes
    numbers = [_number(header, key, None) for key in (f"{naxis}1", f"{naxis}2", "CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2")]
    matrix = _pixel_to_world_matrix(header)
    if None in numbers or matrix is None:
        return None
    nx, ny, ra0, dec0, crpix1, crpix2 = numbers
    # the centre and the four outer corners, in FITS (1-based) pixels
    x = np.array([(nx + 1) / 2, 0.5, nx + 0.5, nx + 0.5, 0.5]) - crpix1
    y = np.array([(ny + 1) / 2, 0.5, 0.5, ny + 0.5, ny + 0.5]) - crpix2
    with np.errstate(all="ignore"):  # absurd scales overflow: no finite disc, checked below
        xi, eta = np.radians(matrix @ np.vstack([x, y]))
        ra, dec = _deproject(np.radians(ra0), np.radians(dec0), xi, eta)
        radius = np.degrees(angular_separation(ra[0], dec[0], ra[1:], dec[1:]).max()) * (1 + DISC_MARGIN)
    if not (np.isfinite(radius) and np.isfinite(ra[0]) and np.isfinite(dec[0]) and 0 < radius < 90):
        return None
    ra_deg = float(np.degrees(ra[0]) % 360.0)  # a tiny negative angle rounds to 360.0
    return SkyDisc(frame, 0.0 if ra_deg >= 360.0 else ra_deg, float(np.degrees(dec[0])), float(radius))


def overlapping(discs: list[SkyDisc | None]) -> np.ndarray:
    """Which discs overlap at least one other disc of the list (of the same frame); a None never does."""
    found = np.zeros(len(discs), dtype=bool)
    by_frame: dict[str, list[int]] = {}
    for i, disc in enumerate(discs):
        if disc is not None:
            by_frame.setdefault(disc.frame, []).append(i)
    for members in by_frame.values():
        if len(members) < 2:
            continue
        ra = np.radians([discs[i].ra_deg for i in members])
        dec = np.radians([discs[i].dec_deg for i in members])
        radius = np.radians([discs[i].radius_deg for i in members])
        order = np.argsort(dec)  # a sweep in declination: only neighbours within reach are compared
        reach = 2 * radius.max()
        for k, i in enumerate(order):
            stop = np.searchsorted(dec[order], dec[i] + reach, side="right")
            others = order[k + 1: stop]
            if others.size == 0:
                continue
            near = angular_separation(ra[i], dec[i], ra[others], dec[others]) <= radius[i] + radius[others]
            if near.any():
                found[members[i]] = True
                found[[members[j] for j in others[near]]] = True
    return found
