"""The one header check before any allocation (skysift.io.fitsheader) and what reads through it."""

from __future__ import annotations

import gzip
import io
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from astropy.io import fits

from skysift.errors import (
    ChecksumMismatch,
    ImageTooLarge,
    InvalidHeader,
    NoImageHDU,
    NotFITS,
    TruncatedFile,
)
from skysift.io import fitsheader
from skysift.io.fits import Sections, inspect_image, read_image
from skysift.pipeline.image import process_image


def _fits_bytes(hdus: list) -> bytes:
    buffer = io.BytesIO()
    fits.HDUList(hdus).writeto(buffer)
    return buffer.getvalue()


def _with_card(raw: bytes, keyword: str, text: str) -> bytes:
    """``raw`` with the first card of ``keyword`` replaced by ``text`` (80 columns)."""
    start = raw.index(f"{keyword:<8}=".encode())
    return raw[:start] + f"{text:<80}".encode() + raw[start + 80:]


def _walk(raw: bytes, hdu=None) -> fitsheader.FileLayout:
    return fitsheader.walk(io.BytesIO(raw), uri="mem", object_size=len(raw), hdu=hdu)


@pytest.fixture
def image_bytes() -> bytes:
    rng = np.random.default_rng(3)
    return _fits_bytes([fits.PrimaryHDU(rng.normal(100, 5, (60, 80)).astype(np.float32))])


def test_layout_of_a_multi_extension_file_names_each_hdu():
    data = np.zeros((20, 30), dtype=np.int16)
    raw = _fits_bytes([fits.PrimaryHDU(), fits.ImageHDU(data, name="CCD1"), fits.ImageHDU(data, name="CCD2"),
                       fits.CompImageHDU(data.astype(np.float32), name="CCD3")])
    assert _walk(raw).selected.name == "CCD1"
    layout = _walk(raw, hdu="ccd3")
    assert layout.selected.compressed and layout.selected.image_shape == (20, 30)
    assert layout.selected.bitpix == -32
    assert [h.name for h in layout.hdus] == ["PRIMARY", "CCD1", "CCD2", "CCD3"]
    with pytest.raises(NoImageHDU, match="there is no HDU 'CCD9'"):
        _walk(raw, hdu="CCD9")


@pytest.mark.parametrize(("keyword", "card", "error", "words"), [
    ("NAXIS1", "NAXIS1  =          99999999999", InvalidHeader, "NAXIS1 = 99999999999: must be from 0 to"),
    ("NAXIS1", "NAXIS1  =                   -5", InvalidHeader, "NAXIS1 = -5"),
    ("NAXIS1", "NAXIS1  = '80'", InvalidHeader, "not a whole number"),
    ("BITPIX", "BITPIX  =                    7", InvalidHeader, "BITPIX = 7: must be one of"),
    ("NAXIS", "NAXIS   =                 1000", InvalidHeader, "NAXIS = 1000"),
    ("NAXIS2", "NAXIS2  =                 6000", TruncatedFile, "truncated upload"),
])
def test_impossible_headers_fail_before_allocation_with_a_named_reason(image_bytes, keyword, card, error, words):
    with pytest.raises(error, match=words):
        _walk(_with_card(image_bytes, keyword, card))


def test_a_header_without_end_is_bad_header_not_a_parse_error(image_bytes):
    start = image_bytes.index(b"END" + b" " * 77)
    raw = image_bytes[:start] + b" " * 80 + image_bytes[start + 80:]
    with pytest.raises(InvalidHeader, match="no END card"):
        _walk(raw)


def test_too_many_extensions_are_refused():
    raw = _fits_bytes([fits.PrimaryHDU()] + [fits.BinTableHDU.from_columns([fits.Column("a", "J", array=[1])])] * 30)
    limits = fitsheader.HeaderLimits(max_hdus=10)
    with pytest.raises(InvalidHeader, match="more than 10 HDUs"):
        fitsheader.walk(io.BytesIO(raw), uri="mem", object_size=len(raw), limits=limits)


def test_not_fits_is_named(tmp_path):
    path = tmp_path / "x.fits"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(3000))
    with pytest.raises(NotFITS, match="not a FITS file"):
        inspect_image(str(path))


def _gzip_bomb(path, declared_shape=(100, 100), extra_zero_bytes=2**28) -> bytes:
    """A gzip file: a valid small image, then far more zeros than its header declares."""
    image = _fits_bytes([fits.PrimaryHDU(np.ones(declared_shape, dtype=np.float32))])
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(image)
        zeros = bytes(2**24)
        for _ in range(extra_zero_bytes // len(zeros)):
            out.write(zeros)
    return image


def test_a_gzip_stream_is_never_inflated_past_what_the_header_declares(tmp_path):
    path = tmp_path / "bomb.fits.gz"
    image = _gzip_bomb(path)
    inflated = fitsheader.inflate_declared(path.read_bytes(), len(image), uri=str(path))
    assert len(inflated) == len(image)  # not 256 MiB
    np.testing.assert_array_equal(read_image(str(path)).data, 1.0)


def test_a_gzip_bomb_reads_within_a_small_memory_cap(tmp_path):
    """The whole read of a 1 GiB-inflating file runs in a process capped far below that."""
    path = tmp_path / "bomb.fits.gz"
    _gzip_bomb(path, extra_zero_bytes=2**30)
    script = textwrap.dedent(f"""
        import resource
        from skysift.io.fits import read_image
        resource.setrlimit(resource.RLIMIT_AS, (1536 * 2**20, 1536 * 2**20))
        print(read_image({str(path)!r}).data.shape)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "(100, 100)"


def test_a_gzip_file_declaring_a_huge_image_is_routed_by_its_header_not_inflated(tmp_path, settings):
    """2 GiB of zeros declared: judged from the header (solar: indexed), in seconds."""
    path = tmp_path / "zeros.fits.gz"
    header = fits.Header([("SIMPLE", True), ("BITPIX", -32), ("NAXIS", 2), ("NAXIS1", 32768), ("NAXIS2", 16384),
                          ("CTYPE1", "HPLN-TAN"), ("CTYPE2", "HPLT-TAN")])  # solar: index only
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(header.tostring().encode())
        zeros = bytes(2**24)
        for _ in range(2**31 // len(zeros)):
            out.write(zeros)
    with pytest.raises(ImageTooLarge):
        read_image(str(path), max_pixels=2**24)
    result = process_image(str(path), settings)
    assert result.record.status == "indexed"
    assert (result.record.nx, result.record.ny) == (32768, 16384)


def test_truncated_gzip_data_is_truncated(tmp_path, image_bytes):
    path = tmp_path / "cut.fits.gz"
    path.write_bytes(gzip.compress(image_bytes)[:-4000])
    with pytest.raises(TruncatedFile):
        read_image(str(path))


@pytest.fixture
def checksummed(tmp_path):
    rng = np.random.default_rng(5)
    path = tmp_path / "sum.fits"
    fits.PrimaryHDU(rng.normal(100, 5, (64, 64)).astype(np.float32)).writeto(path, checksum=True)
    return path


def _flip_a_data_bit(path):
    raw = bytearray(path.read_bytes())
    with fits.open(path) as hdul:
        raw[hdul[0].fileinfo()["datLoc"] + 100] ^= 0x01
    path.write_bytes(bytes(raw))


def test_checksums_are_verified_and_recorded(checksummed, make_sky, settings):
    assert read_image(str(checksummed)).info.checksum_status == "ok"
    plain, _ = make_sky("plain.fits", size=128, n_stars=5, n_galaxies=0)
    assert read_image(str(plain)).info.checksum_status == "absent"
    assert inspect_image(str(checksummed)).checksum_status == "unverified"  # header only
    _flip_a_data_bit(checksummed)
    assert read_image(str(checksummed)).info.checksum_status == "bad"
    with pytest.raises(ChecksumMismatch, match="do not match"):
        read_image(str(checksummed), reject_bad_checksum=True)


def test_checksum_verdict_agrees_with_astropy_for_compressed_and_scaled_files(tmp_path):
    rng = np.random.default_rng(7)
    data = rng.integers(0, 3000, (50, 70)).astype(np.int16)
    rice = tmp_path / "rice.fits.fz"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data)]).writeto(rice, checksum=True)
    scaled = tmp_path / "scaled.fits"
    hdu = fits.PrimaryHDU(data)
    hdu.header["BZERO"], hdu.header["BSCALE"] = 32768, 1
    hdu.writeto(scaled, checksum=True)
    gz = tmp_path / "scaled.fits.gz"
    gz.write_bytes(gzip.compress(scaled.read_bytes()))
    for path in (rice, scaled, gz):
        assert read_image(str(path)).info.checksum_status == "ok", path


def test_a_bad_checksum_is_a_column_or_a_quarantine_reason(checksummed, settings):
    _flip_a_data_bit(checksummed)
    kept = process_image(str(checksummed), settings)
    assert kept.record.checksum_status == "bad"
    assert kept.record.status != "failed"
    strict = settings.model_copy(update={"limits": settings.limits.model_copy(update={"reject_bad_checksum": True})})
    refused = process_image(str(checksummed), strict)
    assert refused.record.status == "failed"
    assert refused.record.error_reason == "bad_checksum"


def test_sections_check_the_header_too(tmp_path, image_bytes):
    path = tmp_path / "huge.fits"
    path.write_bytes(_with_card(image_bytes, "NAXIS1", "NAXIS1  =          99999999999"))
    with pytest.raises(InvalidHeader), Sections(str(path)):
        pass
