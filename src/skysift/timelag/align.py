"""Aligning frames onto one reference cutout, following the solar surface.

The reference cutout is a helioprojective grid seen by the observer of a
reference frame at its observation time, centred on a point given in arcsec. Every
frame of both channels is reprojected onto it with
:func:`sunpy.coordinates.propagate_with_solar_surface`: a pixel of the cutout is a
point on the solar surface that moves with differential rotation (Howard et al.
1990 by default), so a feature stays in the same cutout pixel while the Sun turns.
Cutout pixels off the solar disk have no surface point and become NaN.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import astropy.units as u
import numpy as np
import sunpy.map
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning
from astropy.wcs import WCS
from astropy.wcs.utils import pixel_to_pixel
from reproject import reproject_interp
from sunpy.coordinates import Helioprojective, propagate_with_solar_surface
from sunpy.map.header_helper import make_fitswcs_header
from sunpy.util.exceptions import SunpyUserWarning

from .errors import FrameUnusable, InvalidRequest
from .frames import BBox, Frame

#: Differential rotation model used by :func:`propagate_with_solar_surface`.
ROTATION_MODEL = "howard"


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence sunpy/astropy metadata warnings: headers come from many instruments."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SunpyUserWarning)
        warnings.simplefilter("ignore", AstropyWarning)
        yield


def header_map(header: fits.Header) -> sunpy.map.GenericMap:
    """A 1x1-pixel sunpy map carrying ``header``'s metadata (observer, time, WCS).

    sunpy understands the many ways instruments record the observer (HGLN_OBS,
    CRLN_OBS, HAEX_OBS, ...); this borrows that logic without reading any pixels.
    Raises :class:`FrameUnusable` if the header has no helioprojective WCS with an observer.
    """
    meta = header.copy()
    meta["NAXIS1"] = meta["NAXIS2"] = 1
    try:
        with _quiet():
            smap = sunpy.map.Map(np.zeros((1, 1), dtype=np.float32), meta)
            frame = smap.coordinate_frame
    except (ValueError, TypeError, KeyError, AttributeError) as exc:  # MapMetaValidationError is an AttributeError
        raise FrameUnusable(f"header is not a usable solar image header: {exc}") from exc
    if not isinstance(frame, Helioprojective) or frame.observer is None or isinstance(frame.observer, str):
        raise FrameUnusable(
            f"header has no helioprojective WCS with a known observer (CTYPE1={header.get('CTYPE1')!r}, "
            f"observer={getattr(frame, 'observer', None)!r})"
        )
    return smap


def solar_wcs(header: fits.Header) -> WCS:
    """The WCS of ``header`` with sunpy's observer and time metadata attached."""
    wcs = header_map(header).wcs
    wcs.pixel_shape = (int(header["NAXIS1"]), int(header["NAXIS2"]))
    return wcs


def cutout_header(
    reference: fits.Header,
    center_arcsec: tuple[float, float],
    fov_arcsec: tuple[float, float],
    scale_arcsec: float | None = None,
) -> fits.Header:
    """The FITS header of the reference cutout: solar north up, seen from the reference observer.

    Parameters
    ----------
    reference : Header
        Header of the reference frame: its observer, time and wavelength are used.
    center_arcsec : (float, float)
        Helioprojective (Tx, Ty) of the cutout centre at the reference time, arcsec.
    fov_arcsec : (float, float)
        Width and height of the cutout, arcsec.
    scale_arcsec : float, optional
        Pixel size, arcsec/pixel; default: the reference frame's CDELT1.
    """
    smap = header_map(reference)
    scale = scale_arcsec if scale_arcsec is not None else float(smap.scale.axis1.to_value(u.arcsec / u.pix))
    if scale <= 0 or min(fov_arcsec) <= 0:
        raise InvalidRequest(f"field of view {fov_arcsec} arcsec and scale {scale} arcsec/px must be positive")
    nx, ny = (max(1, round(f / scale)) for f in fov_arcsec)
    if nx * ny > 4096 * 4096:
        raise InvalidRequest(f"the cutout would be {nx}x{ny} pixels: use a coarser --scale or a smaller --fov")
    center = SkyCoord(center_arcsec[0] * u.arcsec, center_arcsec[1] * u.arcsec, frame=smap.coordinate_frame)
    with _quiet():
        header = make_fitswcs_header(
            (ny, nx),
            center,
            scale=[scale, scale] * u.arcsec / u.pix,
            rotation_angle=0 * u.deg,
            instrument=smap.instrument,
            observatory=smap.observatory,
            wavelength=smap.wavelength,
        )
    out = fits.Header(header)
    out["NAXIS"], out["NAXIS1"], out["NAXIS2"] = 2, nx, ny
    return out


def source_bbox(src_header: fits.Header, target_header: fits.Header, margin_px: int = 3, samples: int = 17) -> BBox | None:
    """The rectangle of a source frame that the cutout needs, after solar rotation.

    Samples a ``samples x samples`` grid over the cutout, maps it into the source frame
    with differential rotation, and pads by ``margin_px`` (covers interpolation and the
    curvature between samples). Returns None (read the whole frame) when a sample falls
    off the disk, and an empty-safe clipped rectangle otherwise.
    """
    ny_t, nx_t = int(target_header["NAXIS2"]), int(target_header["NAXIS1"])
    ny_s, nx_s = int(src_header["NAXIS2"]), int(src_header["NAXIS1"])
    gx, gy = np.meshgrid(np.linspace(-0.5, nx_t - 0.5, samples), np.linspace(-0.5, ny_t - 0.5, samples))
    with _quiet(), propagate_with_solar_surface(ROTATION_MODEL):
        sx, sy = pixel_to_pixel(WCS(target_header), solar_wcs(src_header), gx.ravel(), gy.ravel())
    if not (np.isfinite(sx).all() and np.isfinite(sy).all()):
        return None
    x0 = int(np.clip(np.floor(sx.min()) - margin_px, 0, nx_s))
    x1 = int(np.clip(np.ceil(sx.max()) + margin_px + 1, 0, nx_s))
    y0 = int(np.clip(np.floor(sy.min()) - margin_px, 0, ny_s))
    y1 = int(np.clip(np.ceil(sy.max()) + margin_px + 1, 0, ny_s))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None  # the cutout is not in this frame: read it whole, the result will be NaN
    return (y0, y1, x0, x1)


def reproject_frame(frame: Frame, target_header: fits.Header) -> np.ndarray:
    """``frame`` resampled onto the cutout (bilinear), following differential rotation.

    Returns a float32 array of the cutout's shape; NaN where the cutout is off the disk
    or outside the frame.
    """
    shape_out = (int(target_header["NAXIS2"]), int(target_header["NAXIS1"]))
    with _quiet(), propagate_with_solar_surface(ROTATION_MODEL):
        out = reproject_interp(
            (frame.data, solar_wcs(frame.header)),
            WCS(target_header),
            shape_out=shape_out,
            return_footprint=False,
            roundtrip_coords=False,
        )
    return np.asarray(out, dtype=np.float32)
