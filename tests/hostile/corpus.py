"""A corpus of malformed and awkward-but-valid FITS files, each with the verdict it must get.

Every entry is a small typed record: the file's name and bytes, what kind of input it is
and how it was made, and what every path (``skysift run``, the emulated AWS system) must
record for it in the ``images`` table: status ``ok`` / ``indexed`` / ``failed``, the
failure's reason code, and for measured images a minimum number of sources and whether
their sky coordinates must be right (``"sky"``) or null (``"null"``, an untrustworthy WCS).

The expectations are the designed behaviour (issue 11), not whatever the code did when a
file was added. The valid files are cut from one small synthetic sky with known stars
(:mod:`skysift.analysis.synthetic`); the 2 GiB gzip "images" are built stream-wise, never
inflated, so :func:`write_corpus` takes about a second and 20 MB of disk.
"""

from __future__ import annotations

import gzip
import io
import struct
import warnings
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning

from skysift.analysis.synthetic import SkySpec, random_sources, render

BLOCK = 2880
CARD = 80
#: The pointing of the synthetic sky: every measured source of a valid file lies near it.
CENTER_RA, CENTER_DEC = 150.0, 2.2
#: The sky is 256 x 256 pixels of 0.4": a source further than this from the centre is misplaced.
MAX_OFFSET_DEG = 0.05


@dataclass(frozen=True)
class Entry:
    """One corpus file and the verdict every path must give it."""

    name: str  # file name; its suffix (.fits, .fits.gz, .fz) is what both paths select files by
    kind: str  # what it is, in a few words
    how: str  # how it was made
    data: bytes = b""
    status: str = "ok"  # ok | indexed | failed
    reason: str | None = None  # the images row's error_reason (None unless failed)
    min_sources: int = 0  # ok images: at least this many sources
    max_sources: int | None = None  # ok images: at most this many (0 for an image of zeros)
    coords: str | None = None  # ok images: "sky" (RA/Dec near the pointing) or "null" (no trusted WCS)
    checksum: str | None = None  # images.checksum_status: ok | bad | absent (None: not asserted)
    rows: int = 1  # images rows: one per image HDU (a multi-extension file of several images has several)

    @property
    def expected(self) -> tuple[str, str | None]:
        return self.status, self.reason


# -- raw FITS editing ------------------------------------------------------------------------------
def padded(blob: bytes, fill: bytes = b"\0") -> bytes:
    """``blob`` padded to a whole number of 2880-byte blocks."""
    return blob + fill * (-len(blob) % BLOCK)


def card(key: str, value: str) -> bytes:
    """One 80-character card, the value written as given (quote strings yourself)."""
    text = f"{key:<8}= {value:>20}" if not value.startswith("'") else f"{key:<8}= {value}"
    return text.ljust(CARD).encode("ascii")


def header_length(blob: bytes, start: int = 0) -> int:
    """Bytes of the header that starts at ``start`` (its cards up to END, padded to a block)."""
    for offset in range(start, len(blob), CARD):
        if blob[offset : offset + 8] == b"END     ":
            return -(-(offset + CARD - start) // BLOCK) * BLOCK
    raise ValueError("no END card")


def _find_card(blob: bytes, key: str, start: int = 0) -> int:
    end = start + header_length(blob, start)
    for offset in range(start, end, CARD):
        if blob[offset : offset + 8] == f"{key:<8}".encode():
            return offset
    raise KeyError(key)


def set_card(blob: bytes, key: str, value: str, start: int = 0) -> bytes:
    """``blob`` with the first ``key`` card of the header at ``start`` rewritten to ``value``."""
    offset = _find_card(blob, key, start)
    return blob[:offset] + card(key, value) + blob[offset + CARD :]


def blank_card(blob: bytes, key: str, start: int = 0) -> bytes:
    """``blob`` with the first ``key`` card replaced by blanks (the header keeps its length)."""
    offset = _find_card(blob, key, start)
    return blob[:offset] + b" " * CARD + blob[offset + CARD :]


def to_bytes(hdus: Iterable[fits.hdu.base._BaseHDU], *, checksum: bool = False) -> bytes:
    """An HDU list as FITS bytes (astropy writes big-endian, padded, verified loosely)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        fits.HDUList(list(hdus)).writeto(buffer, checksum=checksum, output_verify="silentfix")
    return buffer.getvalue()


def raw_fits(cards: list[tuple[str, str]], data: bytes = b"") -> bytes:
    """A primary HDU from literal cards (values as written) and raw data bytes, padded."""
    header = b"".join(card(k, v) for k, v in cards) + b"END".ljust(CARD)
    return padded(header, b" ") + (padded(data) if data else b"")


# -- gzip streams built without inflating them ------------------------------------------------------
def _gf2_times(matrix: list[int], vector: int) -> int:
    total, row = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[row]
        vector >>= 1
        row += 1
    return total


def _gf2_square(matrix: list[int]) -> list[int]:
    return [_gf2_times(matrix, matrix[n]) for n in range(32)]


def crc32_zeros(crc: int, n: int) -> int:
    """``zlib.crc32(b"\\0" * n, crc)`` in O(log n) (zlib's crc32_combine operator, on zeros)."""
    register = crc ^ 0xFFFFFFFF
    odd = [0xEDB88320] + [1 << (i - 1) for i in range(1, 32)]  # one zero bit
    even = _gf2_square(odd)  # two
    odd = _gf2_square(even)  # four
    while n:
        even = _gf2_square(odd)  # a byte, then 4, 16, ... bytes
        if n & 1:
            register = _gf2_times(even, register)
        n >>= 1
        if not n:
            break
        odd = _gf2_square(even)
        if n & 1:
            register = _gf2_times(odd, register)
        n >>= 1
    return register ^ 0xFFFFFFFF


def gzip_with_zeros(prefix: bytes, n_zeros: int, chunk: int = 2**20) -> bytes:
    """A gzip member holding ``prefix`` then ``n_zeros`` zero bytes, built in O(compressed size).

    After a full flush deflate starts afresh, so every 1 MiB block of zeros compresses to
    the same bytes: compress one, repeat it. A few MB stand for gigabytes.
    """
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts = [deflate.compress(prefix), deflate.flush(zlib.Z_FULL_FLUSH)]
    zeros = bytes(chunk)
    block = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    whole, rest = divmod(n_zeros, chunk)
    parts.append(block * whole)
    parts.append(deflate.compress(bytes(rest)) + deflate.flush(zlib.Z_FINISH))
    crc = crc32_zeros(zlib.crc32(prefix), n_zeros)
    size = (len(prefix) + n_zeros) & 0xFFFFFFFF
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + b"".join(parts) + struct.pack("<II", crc, size)


# -- the sky every valid file is cut from --------------------------------------------------------------
@dataclass(frozen=True)
class Base:
    data: np.ndarray  # float32 counts
    header: fits.Header  # celestial TAN-SIP WCS, gain, zero point, DATE-OBS, FILTER, SURVEY
    plain: bytes  # the sky as a plain float32 FITS file
    header_bytes: int  # length of plain's header
    min_sources: int  # a safe lower bound of what the default settings detect on it

    def hdu(self, data: np.ndarray | None = None, **cards) -> fits.PrimaryHDU:
        header = self.header.copy()
        header.update(cards)
        return fits.PrimaryHDU(self.data if data is None else data, header)


def base_sky(size: int = 256, n_stars: int = 200, seed: int = 11) -> Base:
    """Stars from 17th to 26th magnitude: the faint ones sit near the detection threshold, so
    two paths that detect with different settings give different source counts."""
    rng = np.random.default_rng(seed)
    spec = SkySpec(nx=size, ny=size, center_ra=CENTER_RA, center_dec=CENTER_DEC)
    stars, galaxies = random_sources(spec, n_stars, n_stars // 20, rng, mag_range=(17.0, 26.0))
    sky = render(spec, stars, galaxies, rng, {"DATE-OBS": "2026-03-01T03:00:00", "FILTER": "r", "SURVEY": "hostile"})
    plain = to_bytes([fits.PrimaryHDU(sky.data, sky.header)])
    return Base(sky.data, sky.header, plain, header_length(plain), min_sources=n_stars // 3)


def _without_wcs(header: fits.Header) -> fits.Header:
    keep = fits.Header()
    for key in ("GAIN", "SATURATE", "MAGZERO", "SEEING", "DATE-OBS", "FILTER", "SURVEY"):
        keep[key] = header[key]
    return keep


def _png() -> bytes:
    """A real 8 x 8 grey PNG (what a browser saves when a 'download' link was an image)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = b"".join(b"\0" + bytes(range(0, 256, 32)) for _ in range(8))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _rice(base: Base) -> bytes:
    """The sky tile-compressed as fpack does by default: quantised floats, Rice, 16-row tiles."""
    compressed = fits.CompImageHDU(base.data, base.header, compression_type="RICE_1",
                                   tile_shape=(16, base.data.shape[1]))
    return to_bytes([fits.PrimaryHDU(), compressed])


def _break_one_tile(blob: bytes) -> bytes:
    """``blob`` (a .fz file) with the bytes of its middle tile overwritten by 0xFF."""
    with fits.open(io.BytesIO(blob), disable_image_compression=True) as hdul:
        table = hdul[1]
        start = table.fileinfo()["datLoc"]
        row_bytes, rows = table.header["NAXIS1"], table.header["NAXIS2"]
        heap = start + table.header.get("THEAP", row_bytes * rows)
        column = table.columns.names.index("COMPRESSED_DATA")
        offset = sum(table.columns[i].dtype.itemsize if table.columns[i].format.p_format is None else 8
                     for i in range(column))
        count, tile_offset = struct.unpack(">ii", blob[start + (rows // 2) * row_bytes + offset:][:8])
    where = heap + tile_offset
    return blob[:where] + b"\xff" * count + blob[where + count :]


def _scaled_int16(base: Base) -> bytes:
    """int16 with BSCALE = 2, BZERO = 32768, BLANK = -32768 on a dead column (as raw CCD frames)."""
    bscale, bzero, blank = 2.0, 32768.0, -32768
    stored = np.round((base.data.astype(np.float64) - bzero) / bscale).clip(-32767, 32767).astype(">i2")
    stored[:, 40] = blank
    header = fits.Header([("SIMPLE", True), ("BITPIX", 16), ("NAXIS", 2), ("NAXIS1", stored.shape[1]),
                          ("NAXIS2", stored.shape[0]), ("BSCALE", bscale), ("BZERO", bzero), ("BLANK", blank)])
    header.extend(base.header)
    return header.tostring().encode("ascii") + padded(stored.tobytes())


def _sprinkled(base: Base) -> np.ndarray:
    data = base.data.copy()
    rng = np.random.default_rng(5)
    ys, xs = rng.integers(0, data.shape[0], 300), rng.integers(0, data.shape[1], 300)
    data[ys[:150], xs[:150]] = np.nan
    data[ys[150:250], xs[150:250]] = np.inf
    data[ys[250:], xs[250:]] = -np.inf
    return data


def _duplicate_keywords(base: Base) -> bytes:
    header = base.header.copy()
    header.append(("FILTER", "g", "a second FILTER card, as merged headers have"), useblanks=False)
    header.append(("CRVAL1", base.header["CRVAL1"]), useblanks=False)
    header.append(("GAIN", base.header["GAIN"]), useblanks=False)
    header.append(("DATE-OBS", base.header["DATE-OBS"]), useblanks=False)
    return to_bytes([fits.PrimaryHDU(base.data, header)])


def _long_header(base: Base, n_cards: int = 6000) -> bytes:
    header = base.header.copy()
    for i in range(n_cards):
        header.add_comment(f"processing note {i:05d}: a pipeline that logs every step in the header")
    return to_bytes([fits.PrimaryHDU(base.data, header)])


def _checksum_mismatch(base: Base) -> bytes:
    blob = bytearray(to_bytes([base.hdu()], checksum=True))
    ny, nx = base.data.shape
    blob[base.header_bytes + 4 * (ny // 2 * nx + nx // 3) + 3] ^= 0x01  # the last mantissa bit of one sky pixel
    return bytes(blob)


def _helioprojective(base: Base) -> bytes:
    header = fits.Header()
    for key, value in {"CTYPE1": "HPLN-TAN", "CTYPE2": "HPLT-TAN", "CUNIT1": "arcsec", "CUNIT2": "arcsec",
                       "CDELT1": 0.6, "CDELT2": 0.6, "CRPIX1": 128.5, "CRPIX2": 128.5, "CRVAL1": 0.0,
                       "CRVAL2": 0.0, "DATE-OBS": "2026-03-01T03:00:00", "TELESCOP": "SDO/AIA",
                       "INSTRUME": "AIA_3", "WAVELNTH": 171, "EXPTIME": 2.0, "DSUN_OBS": 1.49e11}.items():
        header[key] = value
    return to_bytes([fits.PrimaryHDU(base.data, header)])


def _gzip_of_zeros_without_wcs(side: int) -> bytes:
    """A gzip file declaring a side x side float32 image of zeros without WCS: catalogued in pixels,
    so every pixel is inflated and measured (through the tiled path when the image is large)."""
    cards = [("SIMPLE", "T"), ("BITPIX", "-32"), ("NAXIS", "2"), ("NAXIS1", str(side)), ("NAXIS2", str(side)),
             ("DATE-OBS", "'2026-03-01T03:00:00'"), ("FILTER", "'r'")]
    return gzip_with_zeros(raw_fits(cards), -(-side * side * 4 // BLOCK) * BLOCK)


def _big_gzip_of_zeros() -> bytes:
    """A gzip file whose header declares a 23170 x 23170 float32 solar image (2 GiB), all zeros:
    index-only (helioprojective), so no path inflates its pixels."""
    side = 23170
    cards = [("SIMPLE", "T"), ("BITPIX", "-32"), ("NAXIS", "2"), ("NAXIS1", str(side)), ("NAXIS2", str(side)),
             ("CTYPE1", "'HPLN-TAN'"), ("CTYPE2", "'HPLT-TAN'"), ("DATE-OBS", "'2026-03-01T03:00:00'"), ("FILTER", "'r'")]
    header = raw_fits(cards)
    data_bytes = -(-side * side * 4 // BLOCK) * BLOCK
    return gzip_with_zeros(header, data_bytes)


#: Pixels above which the corpus's AWS run sends a celestial image to Batch (the template's
#: SmallImageMaxPixels, lowered from 16,777,216 so that the 512 x 512 files take the large path).
SMALL_IMAGE_MAX_PIXELS = 100_000


def large_entries(large: Base) -> list[Entry]:
    """512 x 512 files: in memory locally, the tiled Batch path on AWS (see :data:`SMALL_IMAGE_MAX_PIXELS`)."""
    good = {"status": "ok", "min_sources": large.min_sources, "coords": "sky"}
    return [
        Entry("large_good.fits", "512 x 512, good (Batch on AWS)", "a 512 x 512 sky", large.plain, **good),
        Entry("large_gzip.fits.gz", "512 x 512 gzip (Batch on AWS)", "gzip of the 512 x 512 sky",
              gzip.compress(large.plain, mtime=0), **good),
        Entry("large_all_nan.fits", "512 x 512 all NaN (Batch on AWS)", "every pixel NaN, WCS kept",
              to_bytes([large.hdu(np.full_like(large.data, np.nan))]), status="failed", reason="all_nan"),
        Entry("large_rice_broken_tile.fits.fz", "512 x 512 tile-compressed, a broken tile (Batch on AWS)",
              "the middle tile's bytes set to 0xFF", _break_one_tile(_rice(large)), status="failed", reason="truncated"),
        Entry("large_checksum_mismatch.fits", "512 x 512, CHECKSUM/DATASUM not matching (Batch on AWS)",
              "one mantissa bit flipped after writing", _checksum_mismatch(large), **good, checksum="bad"),
    ]


def entries(base: Base) -> list[Entry]:
    """The corpus, in a fixed order."""
    sky, n = base.plain, base.min_sources
    h = base.header_bytes
    data_len = base.data.nbytes
    good = {"status": "ok", "min_sources": n, "coords": "sky"}

    def failed(reason: str) -> dict:
        return {"status": "failed", "reason": reason}

    return [
        # -- not FITS at all
        Entry("not_fits_png.fits", "not FITS: PNG bytes", "an 8x8 PNG named .fits", _png(), **failed("not_fits")),
        Entry("not_fits_text.fits", "not FITS: text", "an HTML error page saved as .fits",
              b"<html><body><h1>503 Service Unavailable</h1></body></html>\n" * 20, **failed("not_fits")),
        Entry("empty.fits", "empty file", "0 bytes", b"", **failed("empty")),
        # -- cut short
        Entry("truncated_header_only.fits", "truncated: header only", "the sky's header blocks, no data",
              sky[:h], **failed("truncated")),
        Entry("truncated_half_data.fits", "truncated: half the data", "header and half the data bytes",
              sky[: h + data_len // 2], **failed("truncated")),
        # -- headers no real image has
        Entry("header_without_end.fits", "header without END", "the END card blanked, data follows",
              blank_card(sky, "END"), **failed("bad_header")),
        Entry("naxis1_huge.fits", "NAXIS1 = 99999999999 in a small file", "the sky with NAXIS1 rewritten",
              set_card(sky, "NAXIS1", "99999999999"), **failed("bad_header")),
        Entry("naxis1_string.fits", "NAXIS1 a string", "NAXIS1 = '256'",
              set_card(sky, "NAXIS1", "'256'"), **failed("bad_header")),
        Entry("bitpix_7.fits", "BITPIX = 7", "the sky with BITPIX rewritten",
              set_card(sky, "BITPIX", "7"), **failed("bad_header")),
        Entry("naxis_negative.fits", "NAXIS = -1", "the sky with NAXIS rewritten",
              set_card(sky, "NAXIS", "-1"), **failed("bad_header")),
        Entry("naxis_1000.fits", "NAXIS = 1000", "the sky with NAXIS rewritten (the standard allows 999)",
              set_card(sky, "NAXIS", "1000"), **failed("bad_header")),
        Entry("naxis2_negative.fits", "NAXIS2 = -256", "the sky with NAXIS2 rewritten",
              set_card(sky, "NAXIS2", "-256"), **failed("bad_header")),
        Entry("zero_length_axis.fits", "zero-length axis (NAXIS1 = 0)", "a header-only HDU: NAXIS1 = 0, no data",
              set_card(sky[:h], "NAXIS1", "0"), **failed("no_image_hdu")),
        # -- gzip
        Entry("gzip_good.fits.gz", "gzip, good", "gzip of the sky", gzip.compress(sky, mtime=0), **good),
        Entry("gzip_2gib_zeros.fits.gz", "gzip whose header claims a 2 GiB image of zeros",
              "23170 x 23170 float32 of zeros, helioprojective, ~2 MB compressed (built without inflating)",
              _big_gzip_of_zeros(), status="indexed"),
        Entry("gzip_100mb_zeros_no_wcs.fits.gz", "gzip of a 100 MB image of zeros, no WCS (tiled on both paths)",
              "5000 x 5000 float32 zeros, no WCS, 99 KB compressed: every pixel inflated and measured",
              _gzip_of_zeros_without_wcs(5000), status="ok", max_sources=0),
        Entry("gzip_zeros_after_image.fits.gz", "gzip bomb: a good image, then 3 GiB of zeros",
              "the sky followed by 3 GiB of zeros in the same gzip stream (never inflated past the header)",
              gzip_with_zeros(sky, 3 * 2**30), **good),
        Entry("gzip_truncated.fits.gz", "gzip truncated", "the first half of the gzip of the sky",
              gzip.compress(sky, mtime=0)[: len(gzip.compress(sky, mtime=0)) // 2], **failed("truncated")),
        Entry("gzip_corrupt.fits.gz", "gzip corrupt", "the first deflate block's type set to the reserved 11",
              (lambda z: z[:10] + bytes([z[10] | 0x06]) + z[11:])(gzip.compress(sky, mtime=0)), **failed("not_fits")),
        # -- byte orders and pixel types
        Entry("float32_big_endian.fits", "float32, big-endian on disk, with good CHECKSUM/DATASUM",
              "astropy from a '>f4' array, checksum=True",
              to_bytes([base.hdu(base.data.astype(">f4"))], checksum=True), **good, checksum="ok"),
        Entry("float32_native_order.fits", "float32 from a native (little-endian) array",
              "astropy from a '<f4' array", to_bytes([base.hdu(base.data.astype("<f4"))]), **good, checksum="absent"),
        Entry("float64.fits", "BITPIX = -64", "the sky as float64", to_bytes([base.hdu(base.data.astype(np.float64))]), **good),
        Entry("int16_bscale_blank.fits", "int16 with BSCALE/BZERO and BLANK", "BSCALE 2, BZERO 32768, a BLANK column",
              _scaled_int16(base), **good),
        Entry("uint16_bzero.fits", "unsigned 16-bit (BZERO = 32768)", "astropy from a uint16 array",
              to_bytes([base.hdu(base.data.clip(0, 65535).astype(np.uint16))]), **good),
        Entry("all_nan.fits", "all NaN", "every pixel NaN, WCS kept",
              to_bytes([base.hdu(np.full_like(base.data, np.nan))]), **failed("all_nan")),
        Entry("nan_inf_sprinkled.fits", "NaN and +-Inf sprinkled in a good image", "300 pixels NaN, +Inf, -Inf",
              to_bytes([base.hdu(_sprinkled(base))]), **good),
        # -- structure
        Entry("data_in_extension.fits", "data only in an extension (empty primary)", "PrimaryHDU() + ImageHDU(sky)",
              to_bytes([fits.PrimaryHDU(), fits.ImageHDU(base.data, base.header, name="SCI")]), **good),
        Entry("two_images_mef.fits", "multi-extension file with two images", "empty primary, the sky in SCI 1 and SCI 2",
              to_bytes([fits.PrimaryHDU(), fits.ImageHDU(base.data, base.header, name="SCI", ver=1),
                        fits.ImageHDU(base.data, base.header, name="SCI", ver=2)]), **good, rows=2),
        Entry("many_extensions.fits", "200 extensions, the image in the last", "empty primary, 199 empty ImageHDUs, the sky",
              to_bytes([fits.PrimaryHDU()] + [fits.ImageHDU(name=f"EMPTY{i}") for i in range(199)]
                       + [fits.ImageHDU(base.data, base.header, name="SCI")]), **good),
        Entry("rice.fits.fz", "tile-compressed (Rice), good", "fpack-like: quantised float32, RICE_1, 16-row tiles",
              _rice(base), **good),
        Entry("rice_broken_tile.fits.fz", "tile-compressed with a broken tile", "the middle tile's bytes set to 0xFF",
              _break_one_tile(_rice(base)), **failed("truncated")),
        Entry("duplicate_keywords.fits", "duplicate keywords", "FILTER (twice, different), CRVAL1, GAIN, DATE-OBS twice",
              _duplicate_keywords(base), **good),
        Entry("long_header.fits", "a very long header", "6000 COMMENT cards (170 header blocks)", _long_header(base), **good),
        Entry("unpadded.fits", "last block not padded to 2880 bytes", "the sky without its final padding",
              sky[: h + data_len], **good),
        Entry("trailing_garbage.fits", "bytes after the last HDU", "the sky, then 1000 bytes of text",
              sky + b"garbage " * 125, **good),
        Entry("checksum_mismatch.fits", "CHECKSUM/DATASUM not matching the data", "one mantissa bit flipped after writing",
              _checksum_mismatch(base), **good, checksum="bad"),
        # -- WCS
        Entry("crval1_string.fits", "CRVAL1 a string", "CRVAL1 = '150.0'", set_card(sky, "CRVAL1", "'150.0'"),
              status="ok", min_sources=n, coords="null"),
        Entry("helioprojective.fits", "helioprojective WCS (solar)", "HPLN-TAN / HPLT-TAN, AIA-like keywords",
              _helioprojective(base), status="indexed"),
        Entry("no_wcs.fits", "no WCS at all: a pixel catalog", "the sky's pixels, no WCS keywords",
              to_bytes([fits.PrimaryHDU(base.data, _without_wcs(base.header))]), status="ok", min_sources=n,
              coords="null"),
        # -- cubes
        Entry("cube_naxis3_1.fits", "3-D cube, NAXIS3 = 1", "the sky as a (1, 256, 256) array",
              to_bytes([base.hdu(base.data[None])]), **good),
        Entry("cube_naxis3_5.fits", "3-D cube, NAXIS3 = 5", "five copies of the sky as a (5, 256, 256) array",
              to_bytes([base.hdu(np.repeat(base.data[None], 5, axis=0))]), **failed("invalid_image")),
    ]


def write_corpus(directory: str | Path) -> list[Entry]:
    """Write every corpus file into ``directory``; returns the entries (without re-reading them)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    corpus = entries(base_sky()) + large_entries(base_sky(size=512, n_stars=800, seed=12))
    for entry in corpus:
        (directory / entry.name).write_bytes(entry.data)
    return corpus
