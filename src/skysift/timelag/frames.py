"""Reading the frames of a solar image series: headers first, then only the pixels needed.

Headers are small and are gathered eagerly (they decide the reference frame and
which part of each frame the cutout needs). Pixels are read later, inside dask
tasks, and only the rectangle of the frame that the cutout covers
(``ImageHDU.section``), so a 4096x4096 AIA frame costs a fraction of its size in
I/O. Local paths are opened directly, ``s3://`` and other URLs through fsspec with the
request's ``storage_options`` (``{"anon": True}`` reads public buckets such as HelioCloud's
without credentials); the options travel with each task, so remote workers need no
environment variables.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning
from astropy.utils.exceptions import AstropyWarning

from skysift.core.metadata import exposure_seconds
from skysift.errors import SkysiftError, SourceNotFound
from skysift.io.storage import is_remote
from skysift.timelag.errors import FrameUnusable

__all__ = [
    "ESSENTIAL_PREFIXES",
    "BBox",
    "Frame",
    "essential_header",
    "frame_exposure_s",
    "normalise_exposure",
    "read_frame",
    "read_header",
    "read_image_header",
    "section_header",
]

#: (y0, y1, x0, x1): a half-open pixel rectangle, 0-based, numpy order.
BBox = tuple[int, int, int, int]


@dataclass(frozen=True)
class Frame:
    """Pixels of one frame (or a rectangle of it) with the header that describes them.

    ``data`` is float32; ``header`` has NAXIS1/2 and CRPIX1/2 matching ``data``.
    """

    data: np.ndarray
    header: fits.Header


def _open(uri: str, storage_options: Mapping[str, Any] | None = None) -> fits.HDUList:
    remote = is_remote(uri)
    extra = {"fsspec_kwargs": dict(storage_options)} if remote and storage_options else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        try:
            return fits.open(uri, lazy_load_hdus=True, memmap=False, use_fsspec=remote, **extra)
        except FileNotFoundError as exc:
            raise SourceNotFound("frame listed in the image index does not exist", uri=uri) from exc
        except OSError as exc:
            raise FrameUnusable(f"cannot open as FITS: {exc}", uri=uri) from exc


#: Header cards the analysis uses (prefixes): geometry, time, observer, wavelength, exposure, units.
#: Keeping only these makes each header ~20x smaller in the dask graph (AIA headers have ~190 cards).
ESSENTIAL_PREFIXES = (
    "NAXIS", "WCSAXES", "CTYPE", "CUNIT", "CRPIX", "CRVAL", "CDELT", "CROTA", "PC", "CD", "PV", "LONPOLE",
    "LATPOLE", "DATE", "MJD", "T_OBS", "TIMESYS", "RSUN", "DSUN", "HGLN", "HGLT", "CRLN", "CRLT", "HAE", "HEE",
    "HCI", "OBSGEO", "OBS_", "SOLAR_", "WAVE", "TELESCOP", "INSTRUME", "DETECTOR", "OBSRVTRY", "OBSERVAT",
    "EXPTIME", "EXPOSURE", "BUNIT", "PIXLUNIT", "BLANK", "RADESYS", "EQUINOX", "SPECSYS",
)


def essential_header(header: fits.Header) -> fits.Header:
    """The cards of ``header`` the time-lag analysis needs (see :data:`ESSENTIAL_PREFIXES`)."""
    return fits.Header([card for card in header.cards if card.keyword.startswith(ESSENTIAL_PREFIXES)])


def read_header(uri: str, hdu: int = 0, storage_options: Mapping[str, Any] | None = None) -> fits.Header:
    """The essential cards of image HDU ``hdu``'s header (for a tile-compressed HDU, the image header).

    Only the header blocks are read (ranged reads for remote objects).
    """
    with _open(uri, storage_options) as hdul, warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        try:
            header = hdul[hdu].header.copy()
        except IndexError as exc:
            raise FrameUnusable(f"the file has no HDU {hdu}", uri=uri) from exc
    if header.get("NAXIS", 0) != 2:
        raise FrameUnusable(f"HDU {hdu} is not a 2-D image (NAXIS={header.get('NAXIS')})", uri=uri)
    return essential_header(header)


def read_image_header(uri: str, storage_options: Mapping[str, Any] | None = None) -> tuple[int, fits.Header]:
    """The first 2-D image HDU of the file and its essential header cards.

    AIA level-1 files (JSOC, HelioCloud) keep the image in a tile-compressed HDU 1
    behind an empty primary HDU; plain files keep it in HDU 0. Only header blocks
    are read.
    """
    with _open(uri, storage_options) as hdul, warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        for index, hdu in enumerate(hdul):
            if hdu.header.get("NAXIS", 0) == 2 and hdu.is_image:
                return index, essential_header(hdu.header.copy())
    raise FrameUnusable("the file has no 2-D image HDU", uri=uri)


def section_header(header: fits.Header, bbox: BBox) -> fits.Header:
    """``header`` shifted so that it describes the rectangle ``bbox`` of the frame."""
    y0, y1, x0, x1 = bbox
    out = header.copy()
    out["NAXIS1"], out["NAXIS2"] = x1 - x0, y1 - y0
    out["CRPIX1"] = header.get("CRPIX1", 0.0) - x0
    out["CRPIX2"] = header.get("CRPIX2", 0.0) - y0
    return out


def read_frame(uri: str, hdu: int, header: fits.Header, bbox: BBox | None = None,
               storage_options: Mapping[str, Any] | None = None) -> Frame:
    """The pixels of ``bbox`` (whole frame if None) as float32, with a matching header.

    BSCALE/BZERO are applied; a BLANK integer value becomes NaN. ``header`` is the
    one :func:`read_header` returned (passed in so the file's header is parsed once).
    ``storage_options`` go to fsspec for remote ``uri`` (e.g. ``{"anon": True}``).
    """
    ny, nx = int(header["NAXIS2"]), int(header["NAXIS1"])
    bbox = bbox or (0, ny, 0, nx)
    y0, y1, x0, x1 = bbox
    try:
        with _open(uri, storage_options) as hdul, warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            warnings.simplefilter("ignore", VerifyWarning)
            image = hdul[hdu]
            raw = image.section[y0:y1, x0:x1]
    except SkysiftError:
        raise
    except (OSError, ValueError, TypeError, IndexError) as exc:
        raise FrameUnusable(f"cannot read pixels [{y0}:{y1}, {x0}:{x1}] of HDU {hdu}: {exc}", uri=uri) from exc
    data = np.asarray(raw, dtype=np.float32)
    blank = header.get("BLANK")
    if blank is not None and np.issubdtype(np.asarray(raw).dtype, np.integer):
        data[np.asarray(raw) == blank] = np.nan
    if data.shape != (y1 - y0, x1 - x0):
        raise FrameUnusable(f"expected pixels of shape {(y1 - y0, x1 - x0)}, read {data.shape}: truncated file?", uri=uri)
    return Frame(data, section_header(header, bbox))


def frame_exposure_s(header: fits.Header, uri: str | None = None) -> float:
    """Exposure time from the header (EXPTIME, EXPOSURE, ...), seconds; must be > 0."""
    exptime_s = exposure_seconds(header)
    if exptime_s is None or not np.isfinite(exptime_s) or exptime_s <= 0:
        raise FrameUnusable(
            f"no usable exposure time in the header (EXPTIME={header.get('EXPTIME')!r}): "
            "cannot normalise to counts per second",
            uri=uri,
        )
    return float(exptime_s)


def normalise_exposure(frame: Frame, exptime_s: float) -> Frame:
    """Counts (e.g. DN) per frame to counts per second: ``data / exptime_s``.

    The header gets ``BUNIT`` extended with ``/s`` and ``EXPTIME = 1``.
    """
    header = frame.header.copy()
    unit = str(header.get("BUNIT", header.get("PIXLUNIT", "DN"))).strip() or "DN"
    header["BUNIT"] = f"{unit}/s"
    header["EXPTIME"] = 1.0
    return Frame((frame.data / np.float32(exptime_s)).astype(np.float32, copy=False), header)
