"""Aligning frames onto one reference cutout, following the solar surface.

The reference cutout is a helioprojective grid seen by the observer of a
reference frame at its observation time, centred on a point given in arcsec. Every
frame of both channels is reprojected onto it with
:func:`sunpy.coordinates.propagate_with_solar_surface`: a pixel of the cutout is a
point on the solar surface that moves with differential rotation (Howard et al.
1990 by default), so a feature stays in the same cutout pixel while the Sun turns.
Cutout pixels off the solar disk have no surface point and become NaN.

``propagate_with_solar_surface`` switches a module-global of sunpy on and off, so two
threads using it at once would turn the rotation off under each other (dask's threaded
scheduler did: a few percent of the lags changed from run to run). Every use here goes
through :func:`_following_the_surface`, which holds one lock per process; worker
processes (the local and remote clusters) are not slowed down.
"""

from __future__ import annotations

import threading
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
from sunpy.map.maputils import coordinate_is_on_solar_disk
from sunpy.util.exceptions import SunpyUserWarning

from skysift.timelag.errors import CutoutOutsideField, FrameUnusable, InvalidRequest
from skysift.timelag.frames import BBox, Frame

__all__ = [
    "ROTATION_MODEL",
    "check_cutout_in_field",
    "cutout_header",
    "header_map",
    "reproject_frame",
    "solar_wcs",
    "source_bbox",
]

#: Differential rotation model used by :func:`propagate_with_solar_surface`.
ROTATION_MODEL = "howard"
#: Serialises sunpy's global "follow the solar surface" switch between threads.
_SURFACE_LOCK = threading.RLock()


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence sunpy/astropy metadata warnings: headers come from many instruments."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SunpyUserWarning)
        warnings.simplefilter("ignore", AstropyWarning)
        yield


@contextmanager
def _following_the_surface() -> Iterator[None]:
    """Quiet, and with coordinates following the solar surface, for this thread alone (see the module docstring)."""
    with _SURFACE_LOCK, _quiet(), propagate_with_solar_surface(ROTATION_MODEL):
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


def _sample_grid(header: fits.Header, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """A ``samples x samples`` grid of pixel positions spanning ``header``'s image, edges included."""
    ny, nx = int(header["NAXIS2"]), int(header["NAXIS1"])
    gx, gy = np.meshgrid(np.linspace(-0.5, nx - 0.5, samples), np.linspace(-0.5, ny - 0.5, samples))
    return gx.ravel(), gy.ravel()


def check_cutout_in_field(reference: fits.Header, target_header: fits.Header, samples: int = 17) -> None:
    """Raise :class:`CutoutOutsideField` when no part of the cutout is on the disk inside the reference frame.

    Off-disk cutout pixels have no surface point to follow and become NaN, as do pixels
    outside the frames: such a cutout gives an all-NaN map, so it is refused before
    any pixel is read. Samples a ``samples x samples`` grid over the cutout.
    """
    gx, gy = _sample_grid(target_header, samples)
    target_wcs = solar_wcs(target_header)
    center = f"({target_header['CRVAL1']:.0f}, {target_header['CRVAL2']:.0f}) arcsec"
    size = (f"{target_header['NAXIS1'] * abs(target_header['CDELT1']):.0f}x"
            f"{target_header['NAXIS2'] * abs(target_header['CDELT2']):.0f} arcsec")
    with _quiet():
        on_disk = np.asarray(coordinate_is_on_solar_disk(target_wcs.pixel_to_world(gx, gy)), dtype=bool)
    if not on_disk.any():
        raise CutoutOutsideField(
            f"the {size} cutout centred at {center} is entirely off the solar disk: off-disk pixels have no "
            "surface point to follow with the rotation, so every lag would be NaN; choose a --center on the disk")
    with _following_the_surface():
        sx, sy = pixel_to_pixel(target_wcs, solar_wcs(reference), gx[on_disk], gy[on_disk])
    ny_s, nx_s = int(reference["NAXIS2"]), int(reference["NAXIS1"])
    inside = np.isfinite(sx) & np.isfinite(sy) & (sx >= -0.5) & (sx <= nx_s - 0.5) & (sy >= -0.5) & (sy <= ny_s - 0.5)
    if inside.any():
        return
    with _quiet():
        corners = solar_wcs(reference).pixel_to_world([-0.5, nx_s - 0.5], [-0.5, ny_s - 0.5])
    tx = corners.Tx.to_value(u.arcsec)
    ty = corners.Ty.to_value(u.arcsec)
    raise CutoutOutsideField(
        f"the {size} cutout centred at {center} is outside the frames' field of view "
        f"(Tx {tx.min():.0f} to {tx.max():.0f}, Ty {ty.min():.0f} to {ty.max():.0f} arcsec at the reference time): "
        "every lag would be NaN; choose a --center inside it")


def source_bbox(src_header: fits.Header, target_header: fits.Header, margin_px: int = 3, samples: int = 17) -> BBox | None:
    """The rectangle of a source frame that the cutout needs, after solar rotation.

    Samples a ``samples x samples`` grid over the cutout, maps it into the source frame
    with differential rotation, and pads by ``margin_px`` (covers interpolation and the
    curvature between samples). Returns None (read the whole frame) when a sample falls
    off the disk, and an empty-safe clipped rectangle otherwise.
    """
    ny_s, nx_s = int(src_header["NAXIS2"]), int(src_header["NAXIS1"])
    gx, gy = _sample_grid(target_header, samples)
    with _following_the_surface():
        sx, sy = pixel_to_pixel(WCS(target_header), solar_wcs(src_header), gx, gy)
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
    with _following_the_surface():
        out = reproject_interp(
            (frame.data, solar_wcs(frame.header)),
            WCS(target_header),
            shape_out=shape_out,
            return_footprint=False,
            roundtrip_coords=False,
        )
    return np.asarray(out, dtype=np.float32)
