"""Pixel to sky: RA/Dec (ICRS) with SIP distortion, HEALPix indices, image footprints.

Positions are computed with ``WCS.all_pix2world`` (which applies SIP and lookup-table
distortions) at origin 0, so that pixel coordinates are 0-based throughout skysift.
Frames other than ICRS (FK5, galactic, ...) are converted to ICRS.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from astropy import units as u
from astropy.coordinates import ICRS, SkyCoord
from astropy.utils.exceptions import AstropyWarning
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales, wcs_to_celestial_frame
from astropy_healpix import HEALPix

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
