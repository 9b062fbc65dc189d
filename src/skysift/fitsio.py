"""Reading FITS images strictly: local or remote, plain, gzipped or tile-compressed.

Two entry points:

* :func:`inspect_image` reads headers only (a few ranged reads on S3) and returns an
  :class:`ImageInfo` that the router uses to choose a path.
* :func:`read_image` reads and verifies the pixels up front, so that a truncated or
  corrupt upload fails here with a named error rather than later inside SEP.

Pixels come back as native-endian float32 (SEP rejects big-endian data) with
BSCALE/BZERO applied, and a mask of NaN, infinite and BLANK pixels.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import warnings
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning
from astropy.utils.exceptions import AstropyWarning
from astropy.wcs import WCS, FITSFixedWarning
from pydantic import BaseModel, ConfigDict

from . import metadata, storage
from .errors import (
    AllNaN,
    EmptyImage,
    ImageTooLarge,
    InvalidImage,
    NoImageHDU,
    NotFITS,
    TruncatedFile,
)

log = logging.getLogger(__name__)

FITS_MAGIC = b"SIMPLE  ="
GZIP_MAGIC = b"\x1f\x8b"
IMAGE_HDU_TYPES = (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)


class ImageInfo(BaseModel):
    """What the header says about an image, without reading its pixels."""

    model_config = ConfigDict(frozen=True)

    image_id: str
    uri: str
    content_hash: str
    hdu: int
    hdu_name: str
    nx: int
    ny: int
    bytes: int
    bitpix: int
    compressed: bool
    wcs_kind: str  # "celestial" | "helioprojective" | "none"
    survey: str
    band: str
    telescope: str | None = None
    instrument: str | None = None
    wavelength_angstrom: float | None = None
    obs_time: datetime | None = None
    exptime_s: float | None = None

    @property
    def pixels(self) -> int:
        return self.nx * self.ny

    @property
    def obs_night(self) -> str:
        """UTC date of the observation, the partition key; 'unknown' when the header has none."""
        return self.obs_time.date().isoformat() if self.obs_time else "unknown"


@dataclass(frozen=True)
class Image:
    """Pixels ready for measurement, with the header and WCS they came with."""

    data: np.ndarray  # float32, native byte order; masked pixels set to NaN
    mask: np.ndarray  # bool, True where a pixel must not be used
    header: fits.Header
    wcs: WCS | None
    info: ImageInfo


def make_image_id(uri: str, content_hash: str) -> str:
    """Stable id of one version of one object: hash of (location, content fingerprint)."""
    return hashlib.blake2b(f"{uri}\n{content_hash}".encode(), digest_size=8).hexdigest()


def wcs_kind(header: fits.Header) -> str:
    """'helioprojective' for HPLN/HPLT axes, 'celestial' for sky axes, else 'none'."""
    ctypes = [str(header.get(f"CTYPE{i}", "")).upper() for i in (1, 2)]
    if any(c.startswith(("HPLN", "HPLT", "SOLX", "SOLY")) for c in ctypes):
        return "helioprojective"
    wcs = build_wcs(header)
    return "celestial" if wcs is not None and wcs.has_celestial else "none"


def build_wcs(header: fits.Header) -> WCS | None:
    """The celestial WCS (with SIP distortion when present), or None when unusable."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        warnings.simplefilter("ignore", AstropyWarning)
        try:
            wcs = WCS(header, naxis=2, relax=True)
        except Exception as exc:  # astropy raises many types for broken WCS keywords
            log.info("ignoring unusable WCS: %s", exc)
            return None
    return wcs if wcs.has_celestial else None


def _open_hdulist(raw: bytes, uri: str) -> fits.HDUList:
    """Parse FITS bytes (gzip-compressed or not) held in memory."""
    if not raw:
        raise EmptyImage("the file is empty (0 bytes)", uri=uri)
    if raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except EOFError as exc:
            raise TruncatedFile("the gzip stream ends early: truncated upload?", uri=uri) from exc
        except (gzip.BadGzipFile, zlib.error) as exc:
            raise NotFITS(f"corrupt gzip data ({exc})", uri=uri) from exc
    _check_magic(raw[: len(FITS_MAGIC)], uri)
    hdul = _parse(io.BytesIO(raw), uri, memmap=False)
    hdul._skysift_nbytes = len(raw)  # decompressed size, for the truncation check
    return hdul


def _check_magic(head: bytes, uri: str) -> None:
    if head != FITS_MAGIC:
        raise NotFITS(
            f"does not start with the FITS 'SIMPLE' card (first bytes {head[:16]!r}): not a FITS file",
            uri=uri,
        )


def _parse(source, uri: str, *, memmap: bool) -> fits.HDUList:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", VerifyWarning)
            warnings.simplefilter("ignore", AstropyWarning)
            return fits.open(source, memmap=memmap, lazy_load_hdus=False)
    except OSError as exc:
        raise NotFITS(f"cannot parse FITS structure: {exc}", uri=uri) from exc


@contextmanager
def _opened(uri: str) -> Iterator[tuple[fits.HDUList, int, bytes | None]]:
    """The file's HDUs, its size, and its bytes when they had to be read into memory.

    A local uncompressed file is opened by path: astropy reads its pixels straight
    into an array, and the file's bytes are never held in memory a second time.
    Remote and gzipped files are read whole.
    """
    if not storage.is_remote(uri):
        head = storage.read_bytes(uri, len(FITS_MAGIC))
        if not head:
            raise EmptyImage("the file is empty (0 bytes)", uri=uri)
        if head[:2] != GZIP_MAGIC:
            _check_magic(head, uri)
            hdul = _parse(uri, uri, memmap=False)
            hdul._skysift_nbytes = Path(uri).stat().st_size
            with hdul:
                yield hdul, hdul._skysift_nbytes, None
            return
    raw = storage.read_bytes(uri)
    yield _open_hdulist(raw, uri), len(raw), raw


def _image_shape(hdu: fits.hdu.base._BaseHDU) -> tuple[int, ...]:
    header = hdu.header
    naxis = int(header.get("NAXIS", 0))
    return tuple(int(header.get(f"NAXIS{i}", 0)) for i in range(naxis, 0, -1))


def _is_image(hdu) -> bool:
    shape = _image_shape(hdu) if isinstance(hdu, IMAGE_HDU_TYPES) else ()
    return len([n for n in shape if n > 1]) >= 2


def select_hdu(hdul: fits.HDUList, hdu: int | str | None, uri: str) -> int:
    """Index of the requested HDU, or of the first HDU holding a 2-D image."""
    if hdu is not None:
        try:
            index = hdul.index_of(hdu)
        except (KeyError, IndexError) as exc:
            raise NoImageHDU(f"there is no HDU {hdu!r} (the file has {len(hdul)})", uri=uri) from exc
        if not _is_image(hdul[index]):
            raise NoImageHDU(f"HDU {hdu!r} holds no 2-D image", uri=uri)
        return index
    for index, candidate in enumerate(hdul):
        if _is_image(candidate):
            return index
    kinds = ", ".join(type(h).__name__ for h in hdul)
    raise NoImageHDU(f"no HDU holds a 2-D image (HDUs: {kinds})", uri=uri)


def _check_complete(hdul: fits.HDUList, index: int, uri: str) -> None:
    """Fail if the file ends before the selected HDU's data does."""
    info = hdul[index].fileinfo()
    header = hdul[index].header
    if isinstance(hdul[index], fits.CompImageHDU):
        needed = info["datSpan"] - 2879  # compressed table: allow for missing final padding
    else:
        bitpix = abs(int(header.get("BITPIX", 8))) // 8
        needed = bitpix * int(np.prod(_image_shape(hdul[index]), dtype=np.int64))
    have = hdul._skysift_nbytes - info["datLoc"]
    if have < needed:
        shape = " x ".join(str(n) for n in reversed(_image_shape(hdul[index])))
        raise TruncatedFile(
            f"header says a {shape} image with BITPIX={header.get('BITPIX')} "
            f"({needed / 2**20:.1f} MiB of data) but the file ends after "
            f"{hdul._skysift_nbytes / 2**20:.1f} MiB: truncated upload?",
            uri=uri,
        )


def _describe(hdul: fits.HDUList, index: int, uri: str, content_hash: str, nbytes: int,
              survey_default: str | None) -> ImageInfo:
    hdu = hdul[index]
    header = hdu.header
    shape = [n for n in _image_shape(hdu) if n > 1]
    ny, nx = shape[-2], shape[-1]
    # Observation metadata may sit in the primary header of a multi-extension file.
    merged = hdul[0].header.copy() if index else fits.Header()
    merged.update({k: v for k, v in header.items() if k not in ("COMMENT", "HISTORY", "")})
    return ImageInfo(
        image_id=make_image_id(uri, content_hash),
        uri=uri,
        content_hash=content_hash,
        hdu=index,
        hdu_name=hdu.name or "PRIMARY",
        nx=nx,
        ny=ny,
        bytes=nbytes,
        bitpix=int(header.get("BITPIX", 0)),
        compressed=isinstance(hdu, fits.CompImageHDU),
        wcs_kind=wcs_kind(header),
        survey=metadata.survey_name(merged, survey_default),
        band=metadata.band_name(merged),
        telescope=metadata.text_keyword(merged, "TELESCOP"),
        instrument=metadata.text_keyword(merged, "INSTRUME"),
        wavelength_angstrom=metadata.wavelength_angstrom(merged),
        obs_time=metadata.observation_time(merged),
        exptime_s=metadata.exposure_seconds(merged),
    )


def _decode_pixels(selected, uri: str) -> tuple[np.ndarray, np.ndarray]:
    """Native float32 pixels (BSCALE/BZERO applied) and the mask of NaN, infinite and BLANK ones."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            raw_pixels = selected.data
    except (TypeError, ValueError, OSError, EOFError) as exc:
        raise TruncatedFile(f"cannot decode the pixel data: {exc}", uri=uri) from exc
    if raw_pixels is None or raw_pixels.size == 0:
        raise EmptyImage("the image HDU has no pixels", uri=uri)
    pixels = np.squeeze(raw_pixels)
    if pixels.ndim != 2:
        raise InvalidImage(f"expected a 2-D image, found shape {raw_pixels.shape}", uri=uri)
    data, mask = _float32_and_mask(pixels, selected.header)
    if mask.all():
        raise AllNaN("every pixel is NaN, infinite or BLANK", uri=uri)
    return data, mask


def _float32_and_mask(pixels: np.ndarray, header: fits.Header) -> tuple[np.ndarray, np.ndarray]:
    """``pixels`` (scaled values, any byte order) as native float32 with NaN where masked,
    and the mask of NaN, infinite and BLANK pixels."""
    data = np.array(pixels, dtype=np.float32)
    mask = ~np.isfinite(data)
    blank = header.get("BLANK")
    if blank is not None and np.issubdtype(pixels.dtype, np.integer):
        mask |= pixels == blank
    data[mask] = np.nan
    return data, mask


def inspect_image(uri: str, hdu: int | str | None = None, *, survey_default: str | None = None) -> ImageInfo:
    """Header-only description of an image: size, WCS kind, survey, band, time, exposure.

    Remote objects are read in small ranges up to the chosen HDU's header (gzip files
    are streamed through the decompressor). The content fingerprint is the ETag for
    S3 objects and a SHA-256 of the file otherwise.
    """
    return inspect_with_header(uri, hdu, survey_default=survey_default)[0]


def inspect_with_header(uri: str, hdu: int | str | None = None, *,
                        survey_default: str | None = None) -> tuple[ImageInfo, fits.Header]:
    """:func:`inspect_image`, and the chosen HDU's header from the same read."""
    uri = storage.normalize_uri(uri)
    nbytes = storage.object_size(uri)
    if nbytes == 0:
        raise EmptyImage("the file is empty (0 bytes)", uri=uri)
    content_hash = storage.fingerprint(uri)
    with storage.open_binary(uri) as handle:
        head = handle.read(len(FITS_MAGIC))
        if head[:2] != GZIP_MAGIC and head != FITS_MAGIC:
            raise NotFITS(f"does not start with the FITS 'SIMPLE' card (first bytes {head!r})", uri=uri)
        handle.seek(0)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", VerifyWarning)
                warnings.simplefilter("ignore", AstropyWarning)
                hdul = fits.open(handle, lazy_load_hdus=True)
                index = select_hdu(hdul, hdu, uri)
                return _describe(hdul, index, uri, content_hash, nbytes, survey_default), hdul[index].header.copy()
        except (OSError, EOFError) as exc:
            raise TruncatedFile(f"cannot read the headers: {exc}", uri=uri) from exc


def read_image(uri: str, hdu: int | str | None = None, *, max_pixels: int | None = None,
               survey_default: str | None = None) -> Image:
    """Read and verify one image's pixels into memory.

    Raises a subclass of :class:`~skysift.errors.InvalidImage` for files that are not
    FITS, truncated, empty, without an image HDU, all-NaN, or larger than ``max_pixels``.
    The content hash is computed in a thread while the pixels are decoded (hashlib
    releases the GIL), so it costs no wall time.
    """
    uri = storage.normalize_uri(uri)
    with ThreadPoolExecutor(max_workers=1) as hasher, _opened(uri) as (hdul, nbytes, raw):
        content_hash = hasher.submit(storage.fingerprint, uri, None if storage.is_remote(uri) else raw)
        index = select_hdu(hdul, hdu, uri)
        shape = [n for n in _image_shape(hdul[index]) if n > 1]
        if max_pixels is not None and shape[-1] * shape[-2] > max_pixels:
            raise ImageTooLarge(
                f"{shape[-1]} x {shape[-2]} pixels exceeds the in-memory limit of {max_pixels:,} pixels; "
                "use the tiled large-image path",
                uri=uri,
            )
        _check_complete(hdul, index, uri)
        data, mask = _decode_pixels(hdul[index], uri)
        info = _describe(hdul, index, uri, content_hash.result(), nbytes, survey_default)
    header = hdul[index].header.copy()
    return Image(data=data, mask=mask, header=header, wcs=build_wcs(header), info=info)


#: Rectangles are read as bands of whole rows up to this size (see :meth:`Sections.read`).
SECTION_BAND_BYTES = 32 * 2**20
#: gzip files up to this size are decompressed once into memory by :class:`Sections`
#: (astropy would decompress from the start of the file again for every read).
GZIP_IN_MEMORY_MAX_BYTES = 256 * 2**20


class Sections:
    """Rectangles of one image HDU, read on demand with astropy's ``section``.

    Only the rows a rectangle spans are read (see :meth:`read`): from disk, as byte
    ranges of an S3 object, or the compressed tiles they touch; the file is not
    hashed. Serves the tiles of images too large for memory and the small cut-outs of
    alerts and forced photometry. A gzip file is decompressed once into memory when
    ``gzip_in_memory`` and it is at most :data:`GZIP_IN_MEMORY_MAX_BYTES`; otherwise it
    is streamed (bounded memory, but every read decompresses from the start). Use as a
    context manager::

        with Sections(uri, hdu) as image:
            data, mask = image.read(y0, y1, x0, x1)
    """

    def __init__(self, uri: str, hdu: int | str | None = None, *, block_size: int = 2**16,
                 gzip_in_memory: bool = True) -> None:
        self.uri = storage.normalize_uri(uri)
        self._hdu = hdu
        self._block_size = block_size
        self._gzip_in_memory = gzip_in_memory
        self._stack = ExitStack()

    def __enter__(self) -> Sections:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", AstropyWarning)
                hdul = self._open()
                self.selected = hdul[select_hdu(hdul, self._hdu, self.uri)]
                self.header = self.selected.header
            full_shape = _image_shape(self.selected)
            self._image_axes = [axis for axis, n in enumerate(full_shape) if n > 1]
            self._ndim = len(full_shape)
            if len(self._image_axes) != 2:
                raise InvalidImage(f"expected a 2-D image, found shape {full_shape}", uri=self.uri)
            #: (ny, nx) of the image, axes of length 1 (NAXIS3 = 1, ...) left out as read_image does
            self.shape = tuple(full_shape[axis] for axis in self._image_axes)
        except (OSError, EOFError) as exc:
            self._stack.close()
            raise TruncatedFile(f"cannot read the headers: {exc}", uri=self.uri) from exc
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self._stack.close()

    def _open(self) -> fits.HDUList:
        if (self._gzip_in_memory and storage.read_bytes(self.uri, len(GZIP_MAGIC)) == GZIP_MAGIC
                and storage.object_size(self.uri) <= GZIP_IN_MEMORY_MAX_BYTES):
            return self._stack.enter_context(_open_hdulist(storage.read_bytes(self.uri), self.uri))
        handle = self._stack.enter_context(storage.open_binary(self.uri, block_size=self._block_size))
        return self._stack.enter_context(fits.open(handle, memmap=False, lazy_load_hdus=True))

    def _section(self, rows: slice, columns: slice) -> np.ndarray:
        """The HDU's ``section`` at these rows and columns, any length-1 axes indexed at 0."""
        index: list[int | slice] = [0] * self._ndim
        index[self._image_axes[0]], index[self._image_axes[1]] = rows, columns
        return np.asarray(self.selected.section[tuple(index)])

    def read(self, y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray, np.ndarray]:
        """Pixels [y0:y1, x0:x1] as native float32 (scaled, NaN where masked) and the mask
        of NaN, infinite and BLANK pixels.

        astropy reads a rectangle narrower than the image row by row; a band of whole rows
        is one contiguous read (one range request on S3), far quicker, so rectangles are
        read as such bands (then cut) while the band is at most :data:`SECTION_BAND_BYTES`.
        """
        nx = self.shape[1]
        band_bytes = (y1 - y0) * nx * abs(int(self.header["BITPIX"])) // 8
        whole_rows = (x0 == 0 and x1 == nx) or band_bytes <= SECTION_BAND_BYTES
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", AstropyWarning)
                if whole_rows:
                    raw = self._section(slice(y0, y1), slice(None))[:, x0:x1]
                else:
                    raw = self._section(slice(y0, y1), slice(x0, x1))
        except (OSError, EOFError, ValueError, TypeError) as exc:
            raise TruncatedFile(f"cannot read pixels [{y0}:{y1}, {x0}:{x1}]: {exc}", uri=self.uri) from exc
        return _float32_and_mask(raw, self.header)
