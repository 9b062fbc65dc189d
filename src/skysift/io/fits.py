"""Reading FITS images strictly: local or remote, plain, gzipped or tile-compressed.

Two entry points:

* :func:`inspect_image` reads headers only (a few ranged reads on S3) and returns an
  :class:`ImageInfo` that the router uses to choose a path (:func:`view_header`: the
  shape and WCS kind alone, without hashing the file).
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
import math
import os
import tempfile
import warnings
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

import numpy as np
from astropy.io import fits
from astropy.io.fits.hdu.compressed._compression import CfitsioException
from astropy.io.fits.verify import VerifyWarning
from astropy.utils.exceptions import AstropyWarning
from astropy.wcs import WCS
from pydantic import BaseModel, ConfigDict

from skysift.core import calibration, metadata
from skysift.core.astrometry import ParsedWcs, WcsKind, names_celestial_axes, read_wcs
from skysift.core.masks import nothing_masked
from skysift.errors import (
    AllNaN,
    ChecksumMismatch,
    EmptyImage,
    ImageTooLarge,
    InvalidImage,
    NotFITS,
    TruncatedFile,
)
from skysift.io import fitsheader, storage
from skysift.io.fitsheader import (
    DEFAULT_LIMITS,
    GZIP_MAGIC,
    ChecksumStatus,
    FileLayout,
    HeaderLimits,
)

__all__ = [
    "CHUNK_BYTES",
    "GZIP_IN_MEMORY_MAX_BYTES",
    "SECTION_BAND_BYTES",
    "Image",
    "ImageInfo",
    "Sections",
    "build_wcs",
    "celestial_wcs",
    "compact_mask",
    "image_hdu_headers",
    "image_hdus",
    "image_id_hdu",
    "inspect_image",
    "inspect_with_header",
    "kind_of_wcs",
    "make_image_id",
    "read_chunks",
    "read_image",
    "refuse_bad_checksum",
    "streamed_checksum_status",
    "walk_file",
    "walk_gzip",
    "wcs_kind",
    "with_streamed_checksum",
]

log = logging.getLogger(__name__)



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
    wcs_kind: WcsKind
    survey: str
    band: str
    telescope: str | None = None
    instrument: str | None = None
    wavelength_angstrom: float | None = None
    obs_time: datetime | None = None
    exptime_s: float | None = None
    #: AB magnitude of one image unit from the header's zero point (skysift.core.calibration), and
    #: the convention it came from or why it is null
    zero_point_ab: float | None = None
    zero_point_source: str | None = None
    #: CHECKSUM/DATASUM verdict: ok | bad | absent | unverified (header-only reads)
    checksum_status: ChecksumStatus = ChecksumStatus.ABSENT

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
    mask: np.ndarray  # bool, True where a pixel must not be used (read-only, see compact_mask)
    header: fits.Header
    wcs: WCS | None
    info: ImageInfo
    parsed_wcs: ParsedWcs | None = None  # read_wcs(header), when the reader parsed it (``wcs`` is its celestial part)


def make_image_id(uri: str, content_hash: str, hdu: int | str | None = None) -> str:
    """Stable id of one image: hash of (location, content fingerprint, HDU).

    ``hdu`` is None for the file's first image HDU, so that the id of a single-image file
    (and of the first image of a multi-extension file) is the id of the file's version,
    the same as before multi-extension files were split into their images; it is the
    HDU's index for every later image HDU (see :func:`image_id_hdu`). Each image of a
    file thus has its own id, and re-processing an image replaces its rows only.
    """
    key = f"{uri}\n{content_hash}" if hdu is None else f"{uri}\n{content_hash}\nhdu={hdu}"
    return hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


def image_id_hdu(layout: FileLayout) -> int | None:
    """The HDU that goes into the chosen image's id: None when it is the file's first
    image HDU, else its index (the id does not depend on how the HDU was asked for:
    by index, by EXTNAME or as the default)."""
    selected = layout.selected
    earlier_image = any(h.is_image for h in layout.hdus if h.index < selected.index)
    return selected.index if earlier_image else None


def image_hdus(uri: str, *, limits: HeaderLimits = DEFAULT_LIMITS) -> list[int | None]:
    """The ``hdu`` argument of each image of a file, in file order, from its headers only.

    None stands for the first image HDU (what ``hdu=None`` reads; its id is the file
    version's, see :func:`make_image_id`), followed by the index of every later image
    HDU of a multi-extension file (a mosaic's CCDs), at most
    :attr:`HeaderLimits.max_hdus` HDUs in all. Damage found after at least one complete
    header (a truncated or malformed extension, too many HDUs, data that break off) is
    recorded once, as the failure of one image: the images before it are measured (see
    :func:`_reporting_damage`). A file with no readable image before any damage gives
    ``[None]``, whose reading fails as it always did. Bytes after the last HDU that are
    not an extension are no image (:func:`fitsheader.list_hdus` ignores them).
    """
    return [hdu for hdu, _ in image_hdu_headers(uri, limits=limits)]


def image_hdu_headers(uri: str, *, limits: HeaderLimits = DEFAULT_LIMITS) -> list[tuple[int | None, fits.Header | None]]:
    """:func:`image_hdus`, each with its HDU's header from the same walk (None for the HDU
    whose reading reports damage, and for a file with no readable image)."""
    uri = storage.normalize_uri(uri)
    listing = _list_file(uri, limits)
    images = [h.index for h in listing.images]
    if not images:
        return [(None, None)]
    wanted: list[tuple[int | None, fits.Header | None]] = [(None if k == 0 else h.index, h.header)
                                                          for k, h in enumerate(listing.images)]
    failed, error = listing.failed_index, listing.error
    if failed is None or error is None:
        return wanted
    before = sum(1 for i in images if i < failed)
    log.warning("%s: %s (%d image(s) before HDU %d are measured)", uri, error.message, before, failed)
    reporting = _reporting_damage(failed, len(listing.hdus), images)
    return wanted if reporting is None else [*wanted, (reporting, None)]


def _reporting_damage(failed: int, listed: int, images: list[int]) -> int | None:
    """The ``hdu`` argument whose reading fails with the damage found in HDU ``failed``
    (after ``listed`` HDUs were listed, ``images`` among them), or None when an image
    already listed does: its own data break off, so it fails once, not again as the HDU after.

    Damage past the listed HDUs is read as the HDU where it lies; damage in the data of a
    listed HDU that is no image (a table) as the HDU after it, whose reading walks through
    the damage (reading the table itself would only say it holds no image).
    """
    if failed in images:
        return None
    return failed if failed >= listed else failed + 1


def _list_file(uri: str, limits: HeaderLimits) -> fitsheader.HduListing:
    """:func:`fitsheader.list_hdus` of a local or remote, plain or gzipped file."""
    nbytes = storage.object_size(uri)
    if nbytes == 0:
        raise EmptyImage("the file is empty (0 bytes)", uri=uri)
    with storage.open_binary(uri) as handle:
        if handle.read(len(GZIP_MAGIC)) != GZIP_MAGIC:
            handle.seek(0)
            return fitsheader.list_hdus(handle, uri=uri, object_size=nbytes, limits=limits)
        handle.seek(0)
        try:
            with gzip.GzipFile(fileobj=handle, mode="rb") as inflating:
                return fitsheader.list_hdus(inflating, uri=uri, object_size=None, limits=limits, seekable=False)
        except EOFError as exc:
            raise TruncatedFile("the gzip stream ends before the first header does: truncated upload?", uri=uri) from exc
        except (gzip.BadGzipFile, zlib.error) as exc:
            raise NotFITS(f"corrupt gzip data ({exc})", uri=uri) from exc


def wcs_kind(header: fits.Header) -> WcsKind:
    """HELIOPROJECTIVE for HPLN/HPLT axes, CELESTIAL for sky axes, else NONE.

    The WCS is parsed only when CTYPE names neither: sky axes named make an image celestial
    whatever astropy makes of its WCS (see :func:`kind_of_wcs`)."""
    if _names_solar_axes(header) or names_celestial_axes(header):
        return kind_of_wcs(header, None)
    return kind_of_wcs(header, build_wcs(header))


def kind_of_wcs(header: fits.Header, wcs: WCS | None) -> WcsKind:
    """:func:`wcs_kind` of ``header`` given its :func:`build_wcs` (``wcs``), for a caller that
    built it already: astropy parses a header's WCS in ~3 ms (its cards verified and written
    out for wcslib), several times an image when each step parsed it again."""
    if _names_solar_axes(header):
        return WcsKind.HELIOPROJECTIVE
    # sky axes named in CTYPE make an image celestial even when its WCS is broken: it is
    # measured, with null sky positions and the reason (astrometry.validate_celestial_wcs)
    return WcsKind.CELESTIAL if wcs is not None or names_celestial_axes(header) else WcsKind.NONE


def _names_solar_axes(header: fits.Header) -> bool:
    ctypes = [str(header.get(f"CTYPE{i}", "")).upper() for i in (1, 2)]
    return any(c.startswith(("HPLN", "HPLT", "SOLX", "SOLY")) for c in ctypes)


def build_wcs(header: fits.Header) -> WCS | None:
    """The celestial WCS (with SIP distortion when present), or None when unusable.

    Whether it can be trusted is :func:`skysift.core.astrometry.validate_celestial_wcs`'s question.
    """
    return celestial_wcs(read_wcs(header))  # one reading of WCS headers, where they are judged


def celestial_wcs(parsed: ParsedWcs) -> WCS | None:
    """:func:`build_wcs` of the header ``parsed`` was read from (by :func:`~skysift.core.astrometry.read_wcs`)."""
    if parsed.wcs is None:
        log.info("ignoring unusable WCS: %s", parsed.error)
        return None
    return parsed.wcs if parsed.wcs.has_celestial else None


def _parse(source, uri: str) -> fits.HDUList:
    """astropy's view of a file whose structure :func:`fitsheader.walk` has already checked.

    HDUs are loaded lazily, so astropy reads no further than the HDU asked for.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", VerifyWarning)
            warnings.simplefilter("ignore", AstropyWarning)
            return fits.open(source, memmap=False, lazy_load_hdus=True)
    except (OSError, ValueError, EOFError) as exc:
        raise NotFITS(f"cannot parse FITS structure: {exc}", uri=uri) from exc


def walk_gzip(stream: IO[bytes], uri: str, hdu: int | str | None, limits: HeaderLimits) -> FileLayout:
    """:func:`fitsheader.walk` through an inflating gzip stream (read through, never seeked)."""
    with gzip.GzipFile(fileobj=stream, mode="rb") as inflating:
        return _walk_inflating(inflating, uri, hdu, limits)


def _walk_inflating(inflating: gzip.GzipFile, uri: str, hdu: int | str | None, limits: HeaderLimits) -> FileLayout:
    """:func:`fitsheader.walk` of a gzip stream, its failures as typed errors; the stream
    is left just past the chosen HDU's header."""
    try:
        return fitsheader.walk(inflating, uri=uri, object_size=None, hdu=hdu, limits=limits, seekable=False)
    except EOFError as exc:
        raise TruncatedFile("the gzip stream ends before the image's header does: truncated upload?", uri=uri) from exc
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise NotFITS(f"corrupt gzip data ({exc})", uri=uri) from exc


@contextmanager
def _walked(uri: str, hdu: int | str | None, limits: HeaderLimits, block_size: int) -> Iterator[tuple[FileLayout, IO[bytes]]]:
    """The checked structure of a local or remote, plain or gzipped file, and the stream of
    its FITS bytes it was read from (the stored object, or the gzip stream inflating it),
    open for reading on past the chosen HDU's header."""
    nbytes = storage.object_size(uri)
    if nbytes == 0:
        raise EmptyImage("the file is empty (0 bytes)", uri=uri)
    with storage.open_binary(uri, block_size=block_size) as handle:
        gzipped = handle.read(len(GZIP_MAGIC)) == GZIP_MAGIC
        handle.seek(0)
        if not gzipped:
            yield fitsheader.walk(handle, uri=uri, object_size=nbytes, hdu=hdu, limits=limits), handle
            return
        with gzip.GzipFile(fileobj=handle, mode="rb") as inflating:
            yield _walk_inflating(inflating, uri, hdu, limits), inflating


def walk_file(uri: str, hdu: int | str | None = None, *, limits: HeaderLimits = DEFAULT_LIMITS,
              block_size: int = 2**16) -> FileLayout:
    """The checked structure of a local or remote, plain or gzipped file (headers only:
    a few ranged reads on S3; a gzip file is inflated only up to the HDU wanted)."""
    with _walked(uri, hdu, limits, block_size) as (layout, _):
        return layout


#: Bytes read at a time when a data unit is read through (checksums, gzip spooled to disk):
#: a multiple of 4, so that every chunk but the last holds whole 32-bit checksum words.
CHUNK_BYTES = 32 * 2**20


def read_chunks(stream: IO[bytes], nbytes: int, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The next ``nbytes`` of ``stream`` (fewer if it ends first), ``chunk_bytes`` at a
    time: a data unit of any size read through in bounded memory."""
    while nbytes > 0:
        chunk = stream.read(min(chunk_bytes, nbytes))
        if not chunk:
            return
        nbytes -= len(chunk)
        yield chunk


def streamed_checksum_status(uri: str, hdu: int | str | None = None, *, limits: HeaderLimits = DEFAULT_LIMITS,
                             block_size: int = 2**20, chunk_bytes: int = CHUNK_BYTES) -> ChecksumStatus:
    """``CHECKSUM``/``DATASUM`` verdict of an image too large for memory.

    The chosen HDU's data unit is read once, ``chunk_bytes`` at a time, and summed as
    it comes (:func:`fitsheader.checksum_status`, the same sum the in-memory path makes):
    from disk, as ranged reads of an S3 object, or inflated from a gzip stream, in bounded
    memory whatever the image's size. Nothing is read past the header when the header
    declares no checksum (``absent``). A gzip stream that breaks off inside the data is
    :class:`TruncatedFile`, a corrupt one :class:`NotFITS`, as when its pixels are read.
    """
    with _walked(uri, hdu, limits, block_size) as (layout, stream):
        selected = layout.selected
        if not selected.declares_checksum:
            return ChecksumStatus.ABSENT
        try:
            stream.seek(selected.data_offset)  # a gzip stream is there already (forward seeks read through)
            return fitsheader.checksum_status(selected, read_chunks(stream, selected.stored_data_bytes, chunk_bytes))
        except EOFError as exc:
            raise TruncatedFile("the gzip stream ends inside the image's data: truncated upload?", uri=uri) from exc
        except (gzip.BadGzipFile, zlib.error) as exc:
            raise NotFITS(f"corrupt gzip data ({exc})", uri=uri) from exc


def with_streamed_checksum(info: ImageInfo, *, limits: HeaderLimits = DEFAULT_LIMITS) -> ImageInfo:
    """``info`` (from the header only) with its checksum verdict, the data unit streamed
    (:func:`streamed_checksum_status`) when the header declares a checksum: the tiled
    path's ``ok``/``bad`` where it said ``unverified``."""
    if info.checksum_status is not ChecksumStatus.UNVERIFIED:
        return info
    status = streamed_checksum_status(info.uri, info.hdu, limits=limits)
    return info.model_copy(update={"checksum_status": status})


def refuse_bad_checksum(status: ChecksumStatus, uri: str, reject_bad_checksum: bool) -> None:
    """Raise :class:`ChecksumMismatch` for a ``bad`` verdict when the settings quarantine such
    files (``limits.reject_bad_checksum``): one rule and one message for every path."""
    if status is ChecksumStatus.BAD and reject_bad_checksum:
        raise ChecksumMismatch("CHECKSUM/DATASUM do not match the file's bytes: corrupted in transfer?", uri=uri)


def _checked(layout: FileLayout, uri: str, hdu: int | str | None, max_pixels: int | None) -> FileLayout:
    """The chosen HDU holds an image within ``max_pixels`` (judged before any allocation)."""
    fitsheader.check_selected(layout, uri=uri, hdu=hdu)
    shape = [n for n in layout.selected.image_shape if n > 1]
    if max_pixels is not None and math.prod(shape) > max_pixels:
        raise ImageTooLarge(
            f"{' x '.join(str(n) for n in reversed(shape))} pixels exceeds the in-memory limit of "
            f"{max_pixels:,} pixels; use the tiled large-image path",
            uri=uri,
        )
    return layout


@dataclass
class _Opened:
    """One opened file: astropy's HDUs, the checked layout, and where the bytes are."""

    hdul: fits.HDUList
    layout: FileLayout
    stored_bytes: int  # size of the stored object (compressed size for gzip)
    stored: bytes | None  # the stored object's bytes when read into memory
    inflated: bytes | None  # the (decompressed) FITS bytes when held in memory

    def data_chunks(self, uri: str) -> Iterator[bytes]:
        """The chosen HDU's data bytes as stored, in chunks (for checksums)."""
        selected = self.layout.selected
        start, end = selected.data_offset, selected.padded_end
        if self.inflated is not None:
            yield memoryview(self.inflated)[start:end]
            return
        with open(uri, "rb") as handle:
            handle.seek(start)
            yield from read_chunks(handle, end - start)


@contextmanager
def _opened(uri: str, hdu: int | str | None, max_pixels: int | None, limits: HeaderLimits) -> Iterator[_Opened]:
    """The file's checked layout and HDUs (astropy, lazily), the chosen image within limits.

    A local uncompressed file is opened by path: astropy reads its pixels straight
    into an array, and the file's bytes are never held in memory a second time.
    Remote and gzipped files are read whole; gzip is inflated only as far as the
    headers declare.
    """
    if not storage.is_remote(uri):
        head = storage.read_bytes(uri, len(GZIP_MAGIC))
        if not head:
            raise EmptyImage("the file is empty (0 bytes)", uri=uri)
        if head[:2] != GZIP_MAGIC:
            nbytes = Path(uri).stat().st_size
            with open(uri, "rb") as handle:
                layout = fitsheader.walk(handle, uri=uri, object_size=nbytes, hdu=hdu, limits=limits)
            _checked(layout, uri, hdu, max_pixels)
            with _parse(uri, uri) as hdul:
                yield _Opened(hdul, layout, nbytes, None, None)
            return
    stored = storage.read_bytes(uri)
    if not stored:
        raise EmptyImage("the file is empty (0 bytes)", uri=uri)
    inflated = stored
    if stored[:2] == GZIP_MAGIC:
        declared = _checked(walk_gzip(io.BytesIO(stored), uri, hdu, limits), uri, hdu, max_pixels)
        inflated = fitsheader.inflate_declared(stored, declared.declared_bytes, uri=uri, limits=limits)
    layout = fitsheader.walk(io.BytesIO(inflated), uri=uri, object_size=len(inflated), hdu=hdu, limits=limits)
    _checked(layout, uri, hdu, max_pixels)
    with _parse(io.BytesIO(inflated), uri) as hdul:
        yield _Opened(hdul, layout, len(stored), stored, inflated)


def _describe(layout: FileLayout, header: fits.Header, uri: str, content_hash: str,
              nbytes: int, survey_default: str | None, checksum: ChecksumStatus, kind: WcsKind) -> ImageInfo:
    """``header`` is the chosen HDU's image header (astropy's, for a tile-compressed image);
    ``kind`` its :func:`wcs_kind`."""
    primary, selected = layout.primary.header, layout.selected
    shape = [n for n in selected.image_shape if n > 1]
    ny, nx = shape[-2], shape[-1]
    # Observation metadata may sit in the primary header of a multi-extension file (the image's
    # own cards win); a primary image's header is its own metadata, not copied into another
    merged = _readable_cards(header)
    if selected.index:
        own, merged = merged, _readable_cards(primary)
        merged.update(own)
    zp = calibration.zero_point(merged)
    return ImageInfo(
        image_id=make_image_id(uri, content_hash, image_id_hdu(layout)),
        uri=uri,
        content_hash=content_hash,
        hdu=selected.index,
        hdu_name=selected.name or "PRIMARY",
        nx=nx,
        ny=ny,
        bytes=nbytes,
        bitpix=selected.bitpix,
        compressed=selected.compressed,
        wcs_kind=kind,
        survey=metadata.survey_name(merged, survey_default),
        band=metadata.band_name(merged),
        telescope=metadata.text_keyword(merged, "TELESCOP"),
        instrument=metadata.text_keyword(merged, "INSTRUME"),
        wavelength_angstrom=metadata.wavelength_angstrom(merged),
        obs_time=metadata.observation_time(merged),
        exptime_s=metadata.exposure_seconds(merged),
        zero_point_ab=zp.zp_ab if zp else None,
        zero_point_source=zp.source if zp else None,
        checksum_status=checksum,
    )


def _readable_cards(header: fits.Header) -> fits.Header:
    """The cards of ``header`` whose values parse to something a header can hold.

    A card astropy cannot parse (``CRVAL1 = NaN``) or hold (``1E400`` overflows to
    inf) is left out of the metadata; the WCS check judges the original header.
    """
    readable = fits.Header()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        for card in header.cards:
            if card.keyword in ("COMMENT", "HISTORY", ""):
                continue
            try:
                value = card.value
                if isinstance(value, float) and not np.isfinite(value):
                    continue
                readable[card.keyword] = value
            except (ValueError, TypeError, fits.VerifyError):
                continue
    return readable


def _decode_pixels(selected, uri: str) -> tuple[np.ndarray, np.ndarray]:
    """Native float32 pixels (BSCALE/BZERO applied) and the mask of NaN, infinite and BLANK ones."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            raw_pixels = selected.data
    except (TypeError, ValueError, OSError, EOFError, zlib.error, CfitsioException) as exc:
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


def _direct_float32(uri: str, selected: fitsheader.HduLayout) -> tuple[np.ndarray, np.ndarray] | None:
    """The pixels of an uncompressed, unscaled ``BITPIX = -32`` image HDU of a local file, read
    straight into the one native float32 array they are returned in (byte-swapped in place),
    and their mask; None for any other image, which astropy decodes.

    astropy would read the big-endian array and :func:`_float32_and_mask` copy it to native
    order: two arrays the size of the image at once. The values are the same.
    """
    if not _plain_float32(selected):
        return None
    data = np.empty([n for n in selected.image_shape if n > 1], dtype=">f4")
    with open(uri, "rb") as handle:
        missing = _fill(handle.fileno(), data, selected.data_offset)
    if missing:
        raise TruncatedFile(f"cannot decode the pixel data: the file ends {missing} bytes early", uri=uri)
    if not data.dtype.isnative:
        data.byteswap(inplace=True)
    data = data.view(np.float32)  # native order, the same memory
    mask = _not_finite(data)
    if not nothing_masked(mask):
        data[mask] = np.nan
    return data, mask


def _fill(fd: int, pixels: np.ndarray, offset: int) -> int:
    """Read contiguous ``pixels`` straight from file ``fd`` at byte ``offset``; the bytes the
    file ended short of them (0: all read)."""
    buffer = memoryview(pixels.reshape(-1).view(np.uint8))
    filled = 0
    while filled < pixels.nbytes and (got := os.preadv(fd, [buffer[filled:]], offset + filled)):
        filled += got
    return pixels.nbytes - filled


def _plain_float32(selected: fitsheader.HduLayout) -> bool:
    """Whether an image HDU's pixels are its data unit's bytes as they stand: an uncompressed,
    unscaled ``BITPIX = -32`` 2-D image (big-endian float32, read without astropy)."""
    header = selected.header
    return (not selected.compressed and selected.bitpix == -32 and sum(n > 1 for n in selected.image_shape) == 2
            and header.get("BSCALE", 1) == 1 and header.get("BZERO", 0) == 0)


def _not_finite(data: np.ndarray) -> np.ndarray:
    """``~np.isfinite(data)``; when every value is finite, the read-only broadcast of False
    that :func:`compact_mask` would make of it, without the two image-sized boolean arrays.

    A sum of the values is finite only when each value is (a NaN or an infinity makes it
    NaN or infinite), so a finite sum is proof enough and costs no memory; a sum that
    overflows on finite values only sends the image the long way. In a fresh process the
    two arrays are 8,000 pages touched for the first time for a 4096^2 image (11-80 ms on
    this project's VM, see BENCHMARKS.md), the sum ~5 ms.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(data.sum()):
            return np.broadcast_to(np.False_, data.shape)
    return ~np.isfinite(data)


def compact_mask(mask: np.ndarray) -> np.ndarray:
    """``mask``, or a read-only broadcast of False of its shape when no pixel is masked.

    An image with no masked pixel (the common case) then holds no mask array: a 4096^2
    frame's is 16 MiB, which the forked strip workers would each count as their own.
    """
    if nothing_masked(mask):
        return mask
    return mask if mask.any() else np.broadcast_to(np.False_, mask.shape)


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


def inspect_image(uri: str, hdu: int | str | None = None, *, survey_default: str | None = None,
                  limits: HeaderLimits = DEFAULT_LIMITS) -> ImageInfo:
    """Header-only description of an image: size, WCS kind, survey, band, time, exposure.

    Remote objects are read in small ranges up to the chosen HDU's header (gzip files
    are streamed through the decompressor, never past that header). The content
    fingerprint is the ETag for S3 objects and a SHA-256 of the file otherwise. Every
    header on the way is checked first (:mod:`skysift.io.fitsheader`).
    """
    return inspect_with_header(uri, hdu, survey_default=survey_default, limits=limits)[0]


def inspect_with_header(uri: str, hdu: int | str | None = None, *, survey_default: str | None = None,
                        limits: HeaderLimits = DEFAULT_LIMITS) -> tuple[ImageInfo, fits.Header]:
    """:func:`inspect_image`, and the chosen HDU's (image) header from the same read."""
    uri = storage.normalize_uri(uri)
    layout, header = _image_header(uri, hdu, limits)
    info = _describe(layout, header, uri, storage.fingerprint(uri),
                     storage.object_size(uri), survey_default, fitsheader.checksum_status(layout.selected, None),
                     wcs_kind(header))
    return info, header.copy()


@dataclass(frozen=True)
class HeaderView:
    """An image as its headers describe it, before its content is hashed or a pixel read:
    what the router needs (:func:`skysift.pipeline.router.choose_route`), as :class:`ImageInfo`
    has it too."""

    shape: tuple[int, ...]  # the image's axes longer than 1, slowest first: (ny, nx) for a 2-D image
    wcs_kind: WcsKind

    @property
    def nx(self) -> int:
        return self.shape[-1]

    @property
    def ny(self) -> int:
        return self.shape[-2]

    @property
    def pixels(self) -> int:
        """Pixels the in-memory read would hold (every axis counted, as its limit counts them)."""
        return math.prod(self.shape)


def view_header(uri: str, hdu: int | str | None = None, *, limits: HeaderLimits = DEFAULT_LIMITS) -> HeaderView:
    """The chosen image's shape and WCS kind from its headers alone.

    The headers are walked and checked as :func:`inspect_image` does, but the file is not
    hashed: a local file's SHA-256 then runs while :func:`read_image` decodes its pixels.
    """
    uri = storage.normalize_uri(uri)
    layout, header = _image_header(uri, hdu, limits)
    return HeaderView(shape=tuple(n for n in layout.selected.image_shape if n > 1), wcs_kind=wcs_kind(header))


def _image_header(uri: str, hdu: int | str | None, limits: HeaderLimits) -> tuple[FileLayout, fits.Header]:
    """The file's checked layout and the chosen HDU's image header (astropy's, Z keywords
    translated, for a tile-compressed image)."""
    layout = _checked(walk_file(uri, hdu, limits=limits), uri, hdu, None)
    selected = layout.selected
    if selected.compressed:
        return layout, _compressed_image_header(uri, selected.index)
    return layout, selected.header


def _compressed_image_header(uri: str, index: int) -> fits.Header:
    """astropy's image header of a tile-compressed HDU (Z keywords translated)."""
    with storage.open_binary(uri) as handle:
        stream: IO[bytes] = handle
        if handle.read(len(GZIP_MAGIC)) == GZIP_MAGIC:
            stream = gzip.GzipFile(fileobj=handle, mode="rb")
        handle.seek(0)
        with _parse(stream, uri) as hdul:
            try:
                return fitsheader.readable(hdul[index].header.copy(), uri=uri)
            except (OSError, EOFError, ValueError, IndexError) as exc:
                raise TruncatedFile(f"cannot read the compressed image's header: {exc}", uri=uri) from exc


def read_image(uri: str, hdu: int | str | None = None, *, max_pixels: int | None = None,
               survey_default: str | None = None, limits: HeaderLimits = DEFAULT_LIMITS,
               reject_bad_checksum: bool = False) -> Image:
    """Read and verify one image's pixels into memory.

    Every header is checked before anything is allocated (:mod:`skysift.io.fitsheader`);
    raises a subclass of :class:`~skysift.errors.InvalidImage` for files that are not
    FITS, have impossible headers, are truncated, empty, without an image HDU, all-NaN,
    or larger than ``max_pixels``. ``CHECKSUM``/``DATASUM``, when present, are verified
    (``info.checksum_status``); a bad one raises :class:`ChecksumMismatch` when
    ``reject_bad_checksum``. The content hash is computed in a thread while the pixels
    are decoded (hashlib releases the GIL), so it costs no wall time.
    """
    uri = storage.normalize_uri(uri)
    with ThreadPoolExecutor(max_workers=1) as hasher, _opened(uri, hdu, max_pixels, limits) as opened:
        content_hash = hasher.submit(storage.fingerprint, uri, None if storage.is_remote(uri) else opened.stored)
        selected = opened.layout.selected
        try:
            astropy_hdu = opened.hdul[selected.index]
        except (OSError, EOFError, ValueError, IndexError) as exc:
            raise TruncatedFile(f"cannot read HDU {selected.index}: {exc}", uri=uri) from exc
        checksum = fitsheader.checksum_status(selected, opened.data_chunks(uri))
        refuse_bad_checksum(checksum, uri, reject_bad_checksum)
        direct = _direct_float32(uri, selected) if opened.inflated is None else None
        data, mask = direct if direct is not None else _decode_pixels(astropy_hdu, uri)
        if direct is not None and not nothing_masked(mask) and mask.all():
            raise AllNaN("every pixel is NaN, infinite or BLANK", uri=uri)
        mask = compact_mask(mask)
        header = fitsheader.readable(astropy_hdu.header.copy(), uri=uri)
        parsed = read_wcs(header)  # once: the image's kind, its sky positions and their validation use it
        wcs = celestial_wcs(parsed)
        info = _describe(opened.layout, header, uri, content_hash.result(),
                         opened.stored_bytes, survey_default, checksum, kind_of_wcs(header, wcs))
    return Image(data=data, mask=mask, header=header, wcs=wcs, info=info, parsed_wcs=parsed)


#: Rectangles are read as bands of whole rows up to this size (see :meth:`Sections.read`).
SECTION_BAND_BYTES = 32 * 2**20
#: gzip files up to this size are decompressed once into memory by :class:`Sections`
#: (astropy would decompress from the start of the file again for every read).
GZIP_IN_MEMORY_MAX_BYTES = 256 * 2**20


class Sections:
    """Rectangles of one image HDU, read on demand with astropy's ``section``, or by offset
    for a local file of plain float32 pixels (its header is then the one the walk read, and
    astropy does not open the file: a cut-out's read takes ~0.14 ms instead of ~0.24 ms).

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
                 gzip_in_memory: bool = True, limits: HeaderLimits = DEFAULT_LIMITS) -> None:
        self.uri = storage.normalize_uri(uri)
        self._limits = limits
        self._hdu = hdu
        self._block_size = block_size
        self._gzip_in_memory = gzip_in_memory
        self._stack = ExitStack()
        self._plain: IO[bytes] | None = None  # the open file of a plain image (:meth:`_plain_local`)
        self._data_offset = 0

    def __enter__(self) -> Sections:
        try:
            layout = _checked(walk_file(self.uri, self._hdu, limits=self._limits, block_size=self._block_size),
                              self.uri, self._hdu, None)
            if self._plain_local(layout):
                self._plain = self._stack.enter_context(open(self.uri, "rb", buffering=0))
                self._data_offset = layout.selected.data_offset
                self.header = layout.selected.header
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", AstropyWarning)
                    hdul = self._open(layout)
                    self.selected = hdul[layout.selected.index]
                    self.header = self.selected.header
            full_shape = layout.selected.image_shape
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

    def _plain_local(self, layout: FileLayout) -> bool:
        """Whether the image is read here, by offset, rather than by astropy: a local file, not
        gzipped, whose pixels are stored as they are read (:func:`_plain_float32`)."""
        return (not storage.is_remote(self.uri) and _plain_float32(layout.selected)
                and storage.read_bytes(self.uri, len(GZIP_MAGIC)) != GZIP_MAGIC)

    def _read_plain(self, y0: int, y1: int, x0: int, x1: int, whole_rows: bool) -> np.ndarray:
        """Pixels [y0:y1, x0:x1] of a plain image (:meth:`_plain_local`), big-endian, read by offset
        straight into their array: as one band of whole rows when ``whole_rows``, else row by row.
        The rectangle is cut to the image as NumPy (and astropy's ``section``) cut a slice: an offset
        past a row's end would read the next row's pixels."""
        ny, nx = self.shape
        (y0, y1, _), (x0, x1, _) = slice(y0, y1).indices(ny), slice(x0, x1).indices(nx)
        y1, x1 = max(y1, y0), max(x1, x0)
        if whole_rows:
            return self._read_into(np.empty((y1 - y0, nx), dtype=">f4"), y0 * nx)[:, x0:x1]
        pixels = np.empty((y1 - y0, x1 - x0), dtype=">f4")
        for k, y in enumerate(range(y0, y1)):
            self._read_into(pixels[k], y * nx + x0)
        return pixels

    def _read_into(self, pixels: np.ndarray, first: int) -> np.ndarray:
        """Fill contiguous ``pixels`` from the data unit's pixel number ``first`` on."""
        missing = _fill(self._plain.fileno(), pixels, self._data_offset + first * pixels.itemsize)
        if missing:
            raise EOFError(f"the file ends {missing} bytes early")
        return pixels

    def _open(self, layout: FileLayout) -> fits.HDUList:
        if storage.read_bytes(self.uri, len(GZIP_MAGIC)) == GZIP_MAGIC:
            if self._gzip_in_memory and storage.object_size(self.uri) <= GZIP_IN_MEMORY_MAX_BYTES:
                inflated = fitsheader.inflate_declared(storage.read_bytes(self.uri), layout.declared_bytes,
                                                       uri=self.uri, limits=self._limits)
                return self._stack.enter_context(_parse(io.BytesIO(inflated), self.uri))
            # Inflated once into a temporary file (memory bounded, disk bounded by what the
            # headers declare): astropy seeks back for every section, and a gzip stream would
            # be inflated again from its start each time.
            spool = self._stack.enter_context(tempfile.NamedTemporaryFile(prefix="skysift-inflated-"))  # noqa: SIM115 (closed by the stack)
            handle = self._stack.enter_context(storage.open_binary(self.uri, block_size=self._block_size))
            try:
                with gzip.GzipFile(fileobj=handle, mode="rb") as stream:
                    for chunk in read_chunks(stream, layout.declared_bytes):
                        spool.write(chunk)
            except EOFError as exc:
                raise TruncatedFile("the gzip stream ends early: truncated upload?", uri=self.uri) from exc
            except (gzip.BadGzipFile, zlib.error) as exc:
                raise NotFITS(f"corrupt gzip data ({exc})", uri=self.uri) from exc
            spool.flush()
            reader = self._stack.enter_context(open(spool.name, "rb"))  # noqa: SIM115 (closed by the stack)
            return self._stack.enter_context(_parse(reader, self.uri))
        handle = self._stack.enter_context(storage.open_binary(self.uri, block_size=self._block_size))
        return self._stack.enter_context(_parse(handle, self.uri))

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
                if self._plain is not None:
                    raw = self._read_plain(y0, y1, x0, x1, whole_rows)
                elif whole_rows:
                    raw = self._section(slice(y0, y1), slice(None))[:, x0:x1]
                else:
                    raw = self._section(slice(y0, y1), slice(x0, x1))
        except (OSError, EOFError, ValueError, TypeError, zlib.error, CfitsioException) as exc:
            raise TruncatedFile(f"cannot read pixels [{y0}:{y1}, {x0}:{x1}]: {exc}", uri=self.uri) from exc
        return _float32_and_mask(raw, self.header)
