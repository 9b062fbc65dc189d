"""The one header check before any allocation: the structure of a FITS file, validated.

Every path that reads pixels (local whole-image, tiled sections, ``inspect``, ``plot``,
``completeness``, the Inspect Lambda, the Batch worker) first walks the file's headers
here, 2880-byte block by block, without letting astropy size anything:

* each HDU starts with ``SIMPLE``/``XTENSION`` and its header ends with ``END`` within
  :attr:`HeaderLimits.max_header_bytes`;
* ``BITPIX`` is one of 8, 16, 32, 64, -32, -64; ``NAXIS`` is 0-999; every ``NAXISn``
  (and ``ZNAXISn`` of a tile-compressed image) is a whole number from 0 to
  :attr:`HeaderLimits.max_axis_px`; ``PCOUNT``/``GCOUNT`` are sane;
* the data each header declares fits in the object (a shorter object is a truncated
  upload), and there are at most :attr:`HeaderLimits.max_hdus` HDUs before the one
  wanted.

Only then may a caller allocate: the declared image size is known and bounded, and a
gzip stream is inflated only as far as the headers declare (:func:`inflate_declared`).
:func:`walk` stops at the HDU wanted; :func:`list_hdus` walks them all (the image HDUs of a
multi-extension file, each of which is an image of its own), under the same checks.
The file's bytes also give the ``CHECKSUM``/``DATASUM`` verdict (:func:`checksum_status`).
"""

from __future__ import annotations

import gzip
import logging
import math
import re
import warnings
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import IO

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning
from astropy.utils.exceptions import AstropyWarning

from skysift.errors import (
    EmptyImage,
    ImageTooLarge,
    InvalidHeader,
    InvalidImage,
    NoImageHDU,
    NotFITS,
    TruncatedFile,
)
from skysift.limits import DEFAULT_LIMITS, HeaderLimits

__all__ = [
    "BLOCK",
    "CARD",
    "FITS_MAGIC",
    "GZIP_MAGIC",
    "VALID_BITPIX",
    "ChecksumStatus",
    "FileLayout",
    "HduLayout",
    "HduListing",
    "check_selected",
    "checksum_status",
    "inflate_declared",
    "list_hdus",
    "readable",
    "walk",
]

log = logging.getLogger(__name__)

BLOCK = 2880
CARD = 80
FITS_MAGIC = b"SIMPLE  ="
GZIP_MAGIC = b"\x1f\x8b"
VALID_BITPIX = (8, 16, 32, 64, -32, -64)
_END_CARD = b"END" + b" " * 77
_XTENSION = b"XTENSION"
_PRINTABLE = re.compile(rb"[^\x20-\x7e]")




@dataclass(frozen=True)
class HduLayout:
    """Where one HDU lies in the file and what its header declares."""

    index: int
    header: fits.Header
    header_bytes: bytes
    header_offset: int
    data_offset: int
    data_bytes: int  # as declared, without the final padding

    @property
    def padded_end(self) -> int:
        return self.data_offset + math.ceil(self.data_bytes / BLOCK) * BLOCK

    @property
    def name(self) -> str:
        return str(self.header.get("EXTNAME", "PRIMARY" if self.index == 0 else "")).strip()

    @property
    def compressed(self) -> bool:
        return self.header.get("XTENSION") == "BINTABLE" and self.header.get("ZIMAGE") is True

    @property
    def bitpix(self) -> int:
        """BITPIX of the image as stored (ZBITPIX for a tile-compressed image)."""
        return int(self.header["ZBITPIX" if self.compressed else "BITPIX"])

    @property
    def image_shape(self) -> tuple[int, ...]:
        """(..., NAXIS2, NAXIS1) of the image (ZNAXISn for a tile-compressed image)."""
        prefix = "ZNAXIS" if self.compressed else "NAXIS"
        if self.header.get("XTENSION") not in (None, "IMAGE") and not self.compressed:
            return ()
        n = int(self.header.get(prefix, 0))
        return tuple(int(self.header[f"{prefix}{i}"]) for i in range(n, 0, -1))

    @property
    def is_image(self) -> bool:
        """True when the HDU holds an image with at least two axes longer than 1."""
        return len([n for n in self.image_shape if n > 1]) >= 2

    @property
    def declares_checksum(self) -> bool:
        """True when the header carries ``CHECKSUM`` or ``DATASUM`` (something to verify)."""
        return "DATASUM" in self.header or "CHECKSUM" in self.header

    @property
    def stored_data_bytes(self) -> int:
        """Bytes of the data unit as stored, padding included: what ``DATASUM`` sums."""
        return self.padded_end - self.data_offset

    @property
    def image_bytes(self) -> int:
        """Bytes of the decoded image (what astropy allocates to hold it as stored)."""
        return abs(self.bitpix) // 8 * math.prod(self.image_shape) if self.image_shape else 0


@dataclass(frozen=True)
class FileLayout:
    """The HDUs walked so far and the one chosen."""

    hdus: tuple[HduLayout, ...]
    selected: HduLayout
    object_size: int | None  # None for a gzip stream (its inflated size is not known)

    @property
    def primary(self) -> HduLayout:
        return self.hdus[0]

    @property
    def declared_bytes(self) -> int:
        """Bytes of the (decompressed) file up to the end of the chosen HDU's data."""
        return self.selected.padded_end


class ChecksumStatus(StrEnum):
    """``images.checksum_status``: the verdict of ``CHECKSUM``/``DATASUM``."""

    OK = "ok"
    BAD = "bad"
    ABSENT = "absent"
    UNVERIFIED = "unverified"  # present but the data unit was not read (header-only reads)


def _describe_hdu(index: int) -> str:
    return "the primary header" if index == 0 else f"the header of HDU {index}"


def _integer(header: fits.Header, key: str, index: int, uri: str, *, low: int, high: int,
             default: int | None = None) -> int:
    """``header[key]`` as a whole number in [low, high], else a one-line InvalidHeader."""
    value = header.get(key, default)
    where = _describe_hdu(index)
    if value is None:
        raise InvalidHeader(f"{where} has no {key} keyword", uri=uri)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidHeader(f"{where} says {key} = {value!r}: not a whole number", uri=uri)
    if not low <= int(value) <= high:
        raise InvalidHeader(f"{where} says {key} = {value}: must be from {low:,} to {high:,}", uri=uri)
    return int(value)


def _parse_header(raw: bytes, index: int, uri: str) -> fits.Header:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        warnings.simplefilter("ignore", AstropyWarning)
        try:
            header = fits.Header.fromstring(raw.decode("ascii"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidHeader(f"{_describe_hdu(index)} cannot be parsed: {exc}", uri=uri) from exc
    return readable(header, where=_describe_hdu(index), uri=uri)


#: Keywords that say how the bytes are laid out or scaled: one that does not parse makes
#: the file unreadable (bad_header); any other unparsable card is treated as absent.
_STRUCTURAL = re.compile(r"^(SIMPLE|XTENSION|BITPIX|NAXIS\d*|PCOUNT|GCOUNT|GROUPS|BSCALE|BZERO|BLANK|"
                         r"Z[A-Z0-9_]*|TFIELDS|T(FORM|TYPE|DIM|SCAL|ZERO)\d+|THEAP)$")


def readable(header: fits.Header, *, where: str = "the header", uri: str | None = None) -> fits.Header:
    """``header`` without the cards whose values astropy cannot parse.

    astropy parses a card's value only when it is read, and then raises ``VerifyError``
    from deep inside whatever code asked (metadata, WCS, pixel scaling). Parsing every
    card once here turns that into one decision: a structural keyword that does not
    parse is an :class:`InvalidHeader`; any other such card is dropped (logged), so
    nothing downstream ever sees it.
    """
    broken = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        warnings.simplefilter("ignore", AstropyWarning)
        for position, card in enumerate(header.cards):
            try:
                card.value  # noqa: B018 (parsing is the point)
            except (fits.VerifyError, ValueError, TypeError) as exc:
                if _STRUCTURAL.match(card.keyword or ""):
                    raise InvalidHeader(f"{where} has an unparsable {card.keyword} card "
                                        f"({card.image.strip()[:60]!r})", uri=uri) from exc
                broken.append(position)
    if not broken:
        return header
    log.info("%s: %s: ignoring %d unparsable card(s): %s", uri, where, len(broken),
             ", ".join(header.cards[i].keyword for i in broken))
    cleaned = header.copy()
    for position in reversed(broken):
        keyword = cleaned.cards[position].keyword
        if _WCS_KEYWORD.match(keyword or ""):
            # kept as the text it holds, so the WCS check sees a non-numeric value and
            # withholds sky positions (dropping it would silently change the solution)
            text = cleaned.cards[position].image[10:].split("/")[0].strip().strip("'")[:60]
            del cleaned[position]
            cleaned.insert(position, (keyword, f"unparsable: {text}"))
        else:
            del cleaned[position]
    return cleaned


_WCS_KEYWORD = re.compile(r"^(CRVAL|CRPIX|CDELT|CROTA|CD\d_|PC\d_|PV\d_|PS\d_|[AB]P?_|"
                          r"LONPOLE|LATPOLE|EQUINOX|EPOCH)")


def _declared_data_bytes(header: fits.Header, index: int, uri: str, limits: HeaderLimits) -> int:
    """Bytes of data the header declares (FITS standard 4.4.1), every value validated."""
    bitpix = _integer(header, "BITPIX", index, uri, low=-64, high=64)
    if bitpix not in VALID_BITPIX:
        raise InvalidHeader(f"{_describe_hdu(index)} says BITPIX = {bitpix}: must be one of "
                            f"{', '.join(map(str, VALID_BITPIX))}", uri=uri)
    naxis = _integer(header, "NAXIS", index, uri, low=0, high=999)
    axes = [_integer(header, f"NAXIS{i}", index, uri, low=0, high=limits.max_axis_px) for i in range(1, naxis + 1)]
    pcount = _integer(header, "PCOUNT", index, uri, low=0, high=2**62, default=0)
    gcount = _integer(header, "GCOUNT", index, uri, low=0, high=limits.max_axis_px, default=1)
    if header.get("ZIMAGE") is True:
        znaxis = _integer(header, "ZNAXIS", index, uri, low=0, high=999)
        for i in range(1, znaxis + 1):
            _integer(header, f"ZNAXIS{i}", index, uri, low=0, high=limits.max_axis_px)
        zbitpix = _integer(header, "ZBITPIX", index, uri, low=-64, high=64)
        if zbitpix not in VALID_BITPIX:
            raise InvalidHeader(f"{_describe_hdu(index)} says ZBITPIX = {zbitpix}", uri=uri)
    if index == 0 and header.get("GROUPS") is True and axes and axes[0] == 0:
        axes = axes[1:]  # random groups: NAXIS1 = 0 is not a pixel axis
    elements = math.prod(axes) if axes else 0
    return abs(bitpix) // 8 * gcount * (pcount + elements)


def _read_header(stream: IO[bytes], offset: int, index: int, uri: str, limits: HeaderLimits) -> bytes | None:
    """The header's bytes (whole blocks, up to and including END), or None at a clean end of file."""
    chunks: list[bytes] = []
    size = 0
    while True:
        block = _read_exactly(stream, BLOCK)
        if not block and not chunks:
            return None
        if index == 0 and not chunks and block[: len(FITS_MAGIC)] != FITS_MAGIC[: len(block)]:
            raise NotFITS(f"does not start with the FITS 'SIMPLE' card (first bytes {block[:16]!r}): "
                          "not a FITS file", uri=uri)
        if index > 0 and not chunks and _after_last_hdu(block, offset, uri):
            return None
        if len(block) < BLOCK:
            raise TruncatedFile(f"the file ends inside {_describe_hdu(index)} (at byte {offset + size + len(block):,}): "
                                "truncated upload?", uri=uri)
        if index == 0 and not chunks and block[: len(FITS_MAGIC)] != FITS_MAGIC:
            raise NotFITS(f"does not start with the FITS 'SIMPLE' card (first bytes {block[:16]!r}): "
                          "not a FITS file", uri=uri)
        bad = _PRINTABLE.search(block)
        end = _end_card(block)
        if bad is not None and (end is None or bad.start() < end):
            raise InvalidHeader(f"{_describe_hdu(index)} has no END card before byte {offset + size + bad.start():,} "
                                "(binary data where header cards should be)", uri=uri)
        chunks.append(block)
        size += BLOCK
        if end is not None:
            return b"".join(chunks)
        if size >= limits.max_header_bytes:
            raise InvalidHeader(f"{_describe_hdu(index)} is longer than {limits.max_header_bytes / 2**20:.0f} MiB "
                                "with no END card", uri=uri)


def _after_last_hdu(block: bytes, offset: int, uri: str) -> bool:
    """True when ``block`` (up to 2880 bytes at ``offset``, where another HDU could start)
    does not start an extension: the bytes after the last HDU, which are no part of the file.

    Writers pad with zeros or blanks, and transfers append other bytes (a proxy's error
    text, a second upload's tail); none of it is a header, so the file ends with the HDU
    before (a warning names anything but padding). Only bytes that start with
    ``XTENSION`` (or a piece of it, cut short) are an extension, checked as any other.
    """
    start = block[: len(_XTENSION)]
    if start == _XTENSION[: len(start)]:
        return False
    if block.strip(b"\0 "):
        log.warning("%s: the bytes after the last HDU (from byte %s) are not a FITS extension (%r...); ignored",
                    uri, f"{offset:,}", block[:16])
    return True


def _end_card(block: bytes) -> int | None:
    for start in range(0, BLOCK, CARD):
        if block[start:start + CARD] == _END_CARD or (block[start:start + 8] == b"END     "):
            return start
    return None


def _read_exactly(stream: IO[bytes], n: int) -> bytes:
    parts, want = [], n
    while want:
        chunk = stream.read(want)
        if not chunk:
            break
        parts.append(chunk)
        want -= len(chunk)
    return b"".join(parts)


def _skip(stream: IO[bytes], position: int, target: int, seekable: bool) -> int:
    """Move from ``position`` to ``target``; a stream that cannot seek is read through."""
    if seekable:
        stream.seek(target)
        return target
    while position < target:
        chunk = stream.read(min(2**22, target - position))
        if not chunk:
            break
        position += len(chunk)
    return position


def _matches(hdu: HduLayout, wanted: int | str | None) -> bool:
    if wanted is None:
        return hdu.is_image
    if isinstance(wanted, (int, np.integer)):  # a numpy integer too (an hdu read back from a table)
        return hdu.index == int(wanted)
    return hdu.name.upper() == str(wanted).strip().upper()


class _HduWalk:
    """The HDUs of the file on ``stream`` (at its start) in order, each header checked
    before it is yielded.

    Nothing past an HDU is read until the caller asks for the next one, so a caller that
    stops at the HDU it wants never reads (or inflates) further. Raises a typed
    :class:`~skysift.errors.InvalidImage` where the file stops being a real FITS file;
    :attr:`at` then says in which HDU (as ``csv.reader``'s ``line_num`` says where a
    reader is).
    """

    def __init__(self, stream: IO[bytes], *, uri: str, object_size: int | None, limits: HeaderLimits,
                 seekable: bool) -> None:
        self.stream, self.uri, self.object_size, self.limits, self.seekable = stream, uri, object_size, limits, seekable
        #: Index of the HDU whose bytes are being read: its header, or its data while they
        #: are skipped on the way to the next HDU (a gzip stream may break off there).
        self.at = 0

    def __iter__(self) -> Iterator[HduLayout]:
        if self.object_size == 0:
            raise EmptyImage("the file is empty (0 bytes)", uri=self.uri)
        offset = 0
        while True:
            if self.at >= self.limits.max_hdus:
                raise InvalidHeader(f"more than {self.limits.max_hdus:,} HDUs before the one wanted", uri=self.uri)
            layout = self._header(offset)
            if layout is None:
                return
            yield layout
            offset = layout.padded_end
            if self.object_size is not None and offset >= self.object_size:
                return
            if self.object_size is None and offset > self.limits.max_decompressed_bytes:
                self.at += 1  # the next HDU is out of reach
                raise ImageTooLarge(f"the headers declare more than {self.limits.max_decompressed_bytes / 2**30:.0f} GiB "
                                    "before the image wanted", uri=self.uri)
            if not self._skip_data(layout):
                return
            self.at += 1

    def _header(self, offset: int) -> HduLayout | None:
        """HDU :attr:`at`, whose header starts at ``offset``, checked; None at the file's end."""
        raw = _read_header(self.stream, offset, self.at, self.uri, self.limits)
        if raw is None:
            return None
        header = _parse_header(raw, self.at, self.uri)
        data_bytes = _declared_data_bytes(header, self.at, self.uri, self.limits)
        layout = HduLayout(self.at, header, raw, offset, offset + len(raw), data_bytes)
        if self.object_size is not None and layout.data_offset + data_bytes > self.object_size:
            raise TruncatedFile(_truncation_message(layout, self.object_size), uri=self.uri)
        return layout

    def _skip_data(self, layout: HduLayout) -> bool:
        """Move past ``layout``'s data and padding (a stream that cannot seek is read through);
        False when the file ends in the padding, a :class:`TruncatedFile` when it ends before
        the data does (an object's size is checked before an HDU is yielded; an inflating
        gzip stream's only here)."""
        try:
            position = _skip(self.stream, layout.data_offset, layout.padded_end, self.seekable)
        except EOFError as exc:  # a gzip stream without its end
            raise TruncatedFile(f"the gzip stream breaks off inside the data of HDU {layout.index} ({exc}): "
                                "truncated upload?", uri=self.uri) from exc
        if position < layout.data_offset + layout.data_bytes:
            raise TruncatedFile(f"the file ends inside the data of HDU {layout.index} ({position - layout.data_offset:,} "
                                f"of {layout.data_bytes:,} bytes): truncated upload?", uri=self.uri)
        return position == layout.padded_end


def walk(stream: IO[bytes], *, uri: str, object_size: int | None, hdu: int | str | None = None,
         limits: HeaderLimits = DEFAULT_LIMITS, seekable: bool = True) -> FileLayout:
    """Walk the headers of the file on ``stream`` (at its start) up to the HDU wanted.

    ``hdu`` is an index, an EXTNAME, or None for the first HDU holding a 2-D image.
    ``object_size`` is the file's size in bytes (None for an inflating gzip stream,
    which is then read through rather than seeked). Raises a typed
    :class:`~skysift.errors.InvalidImage` for anything a real image cannot be, before
    anything is allocated for pixels.
    """
    hdus: list[HduLayout] = []
    for layout in _HduWalk(stream, uri=uri, object_size=object_size, limits=limits, seekable=seekable):
        hdus.append(layout)
        if _matches(layout, hdu):
            return FileLayout(tuple(hdus), layout, object_size)
    if not hdus:
        raise EmptyImage("the file holds no HDU", uri=uri)
    if hdu is None:
        kinds = ", ".join(_kind(h) for h in hdus[:12]) + (", ..." if len(hdus) > 12 else "")
        raise NoImageHDU(f"no HDU holds a 2-D image (HDUs: {kinds})", uri=uri)
    raise NoImageHDU(f"there is no HDU {hdu!r} (the file has {len(hdus)})", uri=uri)


@dataclass(frozen=True)
class HduListing:
    """Every HDU of a file, as far as its headers could be walked.

    ``error`` is why the walk stopped before the end of the file (a truncated or
    malformed HDU, more than :attr:`HeaderLimits.max_hdus` HDUs); the HDUs before it
    are listed. ``failed_index`` is the HDU where it lies: the one after those listed
    (its header could not be read), or the last one listed when its data break off (a
    gzip stream is only read through as far as the listing goes).
    """

    hdus: tuple[HduLayout, ...]
    error: InvalidImage | None = None
    failed_index: int | None = None

    @property
    def images(self) -> tuple[HduLayout, ...]:
        """The HDUs holding a 2-D image (what :func:`walk` with ``hdu=None`` picks the first of)."""
        return tuple(h for h in self.hdus if h.is_image)


def list_hdus(stream: IO[bytes], *, uri: str, object_size: int | None, limits: HeaderLimits = DEFAULT_LIMITS,
              seekable: bool = True) -> HduListing:
    """Walk every header of the file on ``stream`` (at its start): the multi-extension listing.

    The same checks as :func:`walk`, bounded by :attr:`HeaderLimits.max_hdus`; no pixel
    is read (a seekable stream skips the data, a gzip stream is inflated through). A
    file that fails before its first HDU is complete raises (it holds no image); a
    failure further on is kept in :attr:`HduListing.error` with the HDUs before it, so
    that the images before a damaged extension are still found. Bytes after the last
    HDU that do not start an extension end the file (see :func:`_after_last_hdu`).
    """
    hdus: list[HduLayout] = []
    walker = _HduWalk(stream, uri=uri, object_size=object_size, limits=limits, seekable=seekable)
    try:
        for layout in walker:
            hdus.append(layout)
    except InvalidImage as exc:
        if not hdus:
            raise
        return HduListing(tuple(hdus), exc, walker.at)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:  # an inflating gzip stream that breaks off
        if not hdus:
            raise
        return HduListing(tuple(hdus), TruncatedFile(f"the gzip stream breaks off in HDU {walker.at} ({exc}): "
                                                     "truncated upload?", uri=uri), walker.at)
    if not hdus:
        raise EmptyImage("the file holds no HDU", uri=uri)
    return HduListing(tuple(hdus))


def _kind(hdu: HduLayout) -> str:
    if hdu.compressed:
        return "CompImageHDU"
    return "PrimaryHDU" if hdu.index == 0 else {"IMAGE": "ImageHDU", "BINTABLE": "BinTableHDU",
                                                "TABLE": "TableHDU"}.get(str(hdu.header.get("XTENSION")), "HDU")


def _truncation_message(layout: HduLayout, object_size: int) -> str:
    shape = " x ".join(str(n) for n in reversed(layout.image_shape)) or "no"
    return (f"header says a {shape} image with BITPIX={layout.header.get('BITPIX')} "
            f"({layout.data_bytes / 2**20:,.1f} MiB of data) but the file ends after "
            f"{object_size / 2**20:,.1f} MiB: truncated upload?")


def check_selected(layout: FileLayout, *, uri: str, hdu: int | str | None) -> None:
    """The chosen HDU must be an image; with an explicit ``hdu`` say what it holds instead."""
    if not layout.selected.is_image:
        shape = layout.selected.image_shape
        raise NoImageHDU(f"HDU {hdu!r} holds no 2-D image (shape {shape or 'none'})", uri=uri)


def inflate_declared(raw: bytes, declared_bytes: int, *, uri: str, limits: HeaderLimits = DEFAULT_LIMITS) -> bytes:
    """The first ``declared_bytes`` of a gzip stream held in memory, and no more.

    The stream is never inflated past what the headers declare (a gzip bomb after a
    small header costs nothing), nor past :attr:`HeaderLimits.max_decompressed_bytes`.
    A stream that ends before ``declared_bytes`` (less its final padding) is truncated.
    """
    if declared_bytes > limits.max_decompressed_bytes:
        raise ImageTooLarge(f"the header declares {declared_bytes / 2**30:,.1f} GiB, more than the "
                            f"{limits.max_decompressed_bytes / 2**30:.0f} GiB a gzip file may inflate to", uri=uri)
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(raw, declared_bytes)
    except zlib.error as exc:
        raise NotFITS(f"corrupt gzip data ({exc})", uri=uri) from exc
    if len(out) < declared_bytes - (BLOCK - 1):
        raise TruncatedFile(f"the gzip stream ends after {len(out) / 2**20:,.1f} MiB of the "
                            f"{declared_bytes / 2**20:,.1f} MiB its headers declare: truncated upload?", uri=uri)
    return out


def _fold(total: int) -> int:
    while total >> 32:
        total = (total & 0xFFFFFFFF) + (total >> 32)
    return total


def _ones_complement_sum(chunks: Iterable[bytes | memoryview]) -> int:
    """The FITS 32-bit ones' complement checksum of the concatenated ``chunks``
    (missing final bytes of a word count as zeros, as FITS padding does)."""
    total, carry = 0, b""
    for chunk in chunks:
        data = carry + bytes(chunk) if carry else chunk
        whole = len(data) // 4 * 4
        carry = bytes(data[whole:])
        words = np.frombuffer(data, dtype=">u4", count=whole // 4)
        for start in range(0, words.size, 2**24):  # the uint64 sum of 2**24 words cannot overflow
            total += int(words[start:start + 2**24].sum(dtype=np.uint64))
    if carry:
        total += int.from_bytes(carry.ljust(4, b"\0"), "big")
    return _fold(total)


def checksum_status(layout: HduLayout, data: Iterable[bytes | memoryview] | None) -> ChecksumStatus:
    """Verdict of the HDU's ``CHECKSUM``/``DATASUM`` (FITS checksum convention).

    ``data`` is the HDU's data bytes as stored, in chunks (padding may be left out: it
    is zeros), or None when they were not read (a present checksum is then
    ``unverified``). The chunks are summed one at a time, so a generator of bounded
    chunks verifies a data unit of any size in bounded memory
    (:func:`skysift.io.fits.streamed_checksum_status`).
    """
    if not layout.declares_checksum:
        return ChecksumStatus.ABSENT
    if data is None:
        return ChecksumStatus.UNVERIFIED
    data_sum = _ones_complement_sum(data)
    if "DATASUM" in layout.header:
        try:
            declared = int(str(layout.header["DATASUM"]).strip())
        except ValueError:
            return ChecksumStatus.BAD
        if declared != data_sum:
            return ChecksumStatus.BAD
    if "CHECKSUM" in layout.header and _fold(_ones_complement_sum([layout.header_bytes]) + data_sum) not in (0xFFFFFFFF, 0):
        return ChecksumStatus.BAD
    return ChecksumStatus.OK
