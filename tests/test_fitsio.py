"""Reading FITS strictly: every supported encoding gives the same pixels; bad input gets a typed error."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import example, given, settings
from hypothesis import strategies as st

from skysift import errors
from skysift.core.masks import nothing_masked
from skysift.io import fits as fitsio
from skysift.io.fits import inspect_image, read_image


def test_m13_compressed_twins_decode_to_the_same_pixels(m13_files):
    plain = read_image(str(m13_files["plain"]))
    for kind in ("rice", "hcompress", "gzip"):
        twin = read_image(str(m13_files[kind]))
        assert twin.info.compressed and twin.info.hdu == 1
        np.testing.assert_array_equal(twin.data, plain.data)


def test_inspect_reads_header_facts_of_real_files(m13_files, aia_file):
    m13 = inspect_image(str(m13_files["rice"]))
    assert (m13.nx, m13.ny, m13.wcs_kind, m13.hdu) == (300, 300, "celestial", 1)
    aia = inspect_image(str(aia_file))
    assert aia.wcs_kind == "helioprojective"
    assert aia.wavelength_angstrom == pytest.approx(171.0)
    assert aia.instrument.startswith("AIA") and aia.obs_time.year == 2011
    assert aia.exptime_s == pytest.approx(2.0, abs=0.01)


def test_image_id_is_stable_and_changes_with_content(tmp_path):
    path = tmp_path / "a.fits"
    fits.writeto(path, np.ones((20, 20), np.float32))
    first = inspect_image(str(path)).image_id
    assert inspect_image(str(path)).image_id == first
    fits.writeto(path, np.full((20, 20), 2, np.float32), overwrite=True)
    assert inspect_image(str(path)).image_id != first


def test_big_endian_scaled_integers_become_native_float32(tmp_path):
    raw = np.arange(100, dtype=">i2").reshape(10, 10)
    hdu = fits.PrimaryHDU(raw)
    hdu.header["BSCALE"], hdu.header["BZERO"] = 2.0, 1000.0
    path = tmp_path / "scaled.fits"
    hdu.writeto(path)
    image = read_image(str(path))
    assert image.data.dtype == np.float32 and image.data.dtype.isnative
    np.testing.assert_allclose(image.data, raw.astype(float) * 2.0 + 1000.0)


def test_local_float32_is_read_into_one_native_array_with_astropys_values(tmp_path, monkeypatch):
    """A local unscaled BITPIX -32 image is read straight into native order (no second copy of
    the image): the same pixels and mask as astropy's decoding, in a primary or a later HDU."""
    data = np.random.default_rng(4).normal(100, 5, size=(40, 30)).astype(np.float32)
    data[1, 2], data[5, 6], data[7, 8] = np.nan, np.inf, -np.inf
    path = tmp_path / "f32.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data.reshape(1, 40, 30), name="SCI")]).writeto(path)
    read_directly = []
    original = fitsio._direct_float32
    monkeypatch.setattr(fitsio, "_direct_float32", lambda *args: read_directly.append(original(*args)) or read_directly[-1])
    direct = read_image(str(path))
    assert read_directly[0] is not None
    monkeypatch.setattr(fitsio, "_direct_float32", lambda *_: None)
    decoded = read_image(str(path))
    assert direct.data.dtype == np.float32 and direct.data.dtype.isnative and direct.data.flags.c_contiguous
    np.testing.assert_array_equal(direct.data, decoded.data)
    np.testing.assert_array_equal(direct.mask, decoded.mask)
    assert direct.mask.sum() == 3 and direct.info == decoded.info


_SPECIAL = st.sampled_from([np.nan, np.inf, -np.inf, 3e38, -3e38, 0.0, 1.0])


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 300), specials=st.lists(st.tuples(st.integers(0, 299), _SPECIAL), max_size=6),
       seed=st.integers(0, 2**16))
def test_the_mask_of_non_finite_pixels_is_isfinites_whatever_the_values(n, specials, seed):
    """NaN, infinities and finite values whose sum overflows (3e38 twice) in any places: the
    mask is exactly ``~np.isfinite``; the broadcast of False only when nothing is masked, and
    always then once compacted."""
    data = np.random.default_rng(seed).normal(100, 5, size=n).astype(np.float32)
    for index, value in specials:
        if index < n:
            data[index] = value
    data = data.reshape(1, n)
    mask = fitsio._not_finite(data)
    np.testing.assert_array_equal(mask, ~np.isfinite(data))
    if nothing_masked(mask):  # never when a pixel is not finite (an overflowing sum takes the long way)
        assert np.isfinite(data).all()
    assert nothing_masked(fitsio.compact_mask(mask)) == bool(np.isfinite(data).all())


def test_an_image_without_a_non_finite_pixel_holds_no_mask_array(tmp_path):
    """The usual image (every pixel finite) is read without making its image-sized mask."""
    data = np.random.default_rng(5).normal(100, 5, size=(64, 48)).astype(np.float32)
    path = tmp_path / "finite.fits"
    fits.PrimaryHDU(data).writeto(path)
    image = read_image(str(path))
    np.testing.assert_array_equal(image.data, data)
    assert image.mask.shape == data.shape and not image.mask.any()
    assert image.mask.strides == (0, 0) and not image.mask.flags.writeable


def test_gzipped_and_multi_extension_files(tmp_path):
    data = np.random.default_rng(0).normal(size=(30, 40)).astype(np.float32)
    hdul = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data * 0, name="FIRST"), fits.ImageHDU(data, name="SCI")])
    plain = tmp_path / "mef.fits"
    hdul.writeto(plain)
    packed = tmp_path / "mef.fits.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert read_image(str(packed)).info.hdu == 1  # the first image HDU with data
    chosen = read_image(str(packed), "SCI")
    np.testing.assert_array_equal(chosen.data, data)
    assert (chosen.info.nx, chosen.info.ny) == (40, 30)


def test_nan_and_blank_pixels_are_masked(tmp_path):
    data = np.arange(100, dtype=np.int16).reshape(10, 10)
    data[2, 3] = -999
    hdu = fits.PrimaryHDU(data)
    hdu.header["BLANK"] = -999
    path = tmp_path / "blank.fits"
    hdu.writeto(path)
    image = read_image(str(path))
    assert image.mask[2, 3] and image.mask.sum() == 1 and np.isnan(image.data[2, 3])


@pytest.mark.parametrize("float32", [True, False], ids=["direct float32", "astropy-decoded int16"])
def test_an_image_without_masked_pixels_holds_no_mask_array(tmp_path, float32):
    """No pixel masked: the mask is a read-only view of one False (the strip workers would each
    count a 4096^2 frame's 16 MiB mask as theirs); with one masked pixel it is a full array."""
    data = np.arange(120, dtype=np.float32 if float32 else np.int16).reshape(10, 12)
    path = tmp_path / "clean.fits"
    fits.PrimaryHDU(data).writeto(path)
    clean = read_image(str(path))
    assert clean.mask.shape == (10, 12) and not clean.mask.any() and not clean.mask.flags.writeable
    assert clean.mask.strides == (0, 0)  # one element's memory, whatever the shape
    assert clean.mask.copy().flags.writeable and clean.data[clean.mask].size == 0
    data = data.astype(np.float32)
    data[4, 5] = np.nan
    fits.PrimaryHDU(data).writeto(path, overwrite=True)
    masked = read_image(str(path))
    assert masked.mask.flags.writeable and masked.mask.strides != (0, 0)
    assert masked.mask[4, 5] and masked.mask.sum() == 1


@pytest.mark.parametrize(
    ("content", "error", "words"),
    [
        (b"", errors.EmptyImage, "empty"),
        (b"hello, this is not an image" * 200, errors.NotFITS, "not a FITS file"),
        (gzip.compress(b"SIMPLE  =" + b" " * 3000, mtime=0)[:40], errors.TruncatedFile, "truncated"),
    ],
    ids=["empty", "text", "cut-gzip"],
)
def test_bad_bytes_raise_typed_errors(tmp_path, content, error, words):
    path = tmp_path / "bad.fits"
    path.write_bytes(content)
    with pytest.raises(error, match=words) as info:
        read_image(str(path))
    assert info.value.reason == error.reason and info.value.uri == str(path)


def test_truncated_upload_names_the_missing_bytes(tmp_path):
    path = tmp_path / "cut.fits"
    fits.writeto(path, np.zeros((400, 400), np.float32))
    path.write_bytes(path.read_bytes()[:200_000])
    with pytest.raises(errors.TruncatedFile, match=r"400 x 400 image .* ends after 0.2 MiB: truncated upload"):
        read_image(str(path))


def test_table_only_file_has_no_image_hdu(tmp_path):
    path = tmp_path / "table.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns([fits.Column("a", "E", array=np.ones(3))])]).writeto(path)
    with pytest.raises(errors.NoImageHDU, match="no HDU holds a 2-D image"):
        read_image(str(path))


def test_all_nan_image_is_rejected(tmp_path):
    path = tmp_path / "nan.fits"
    fits.writeto(path, np.full((50, 50), np.nan, np.float32))
    with pytest.raises(errors.AllNaN):
        read_image(str(path))


def test_absurd_size_is_rejected_before_reading_pixels(tmp_path):
    path = tmp_path / "big.fits"
    fits.writeto(path, np.zeros((100, 100), np.float32))
    with pytest.raises(errors.ImageTooLarge, match="exceeds the in-memory limit"):
        read_image(str(path), max_pixels=5000)


def test_missing_file_is_not_found(tmp_path):
    with pytest.raises(errors.SourceNotFound):
        read_image(str(tmp_path / "nope.fits"))


def test_sections_read_the_same_pixels_as_a_whole_read(m13_files, tmp_path, monkeypatch):
    scaled = np.random.default_rng(3).integers(-500, 500, size=(300, 200)).astype(">i2")
    scaled[17, 40] = -999
    hdu = fits.PrimaryHDU(scaled)
    hdu.header["BSCALE"], hdu.header["BZERO"], hdu.header["BLANK"] = 0.5, 100.0, -999
    hdu.writeto(tmp_path / "scaled.fits")
    (tmp_path / "scaled.fits.gz").write_bytes(gzip.compress((tmp_path / "scaled.fits").read_bytes()))
    fits.PrimaryHDU(scaled[None].astype(np.float32)).writeto(tmp_path / "naxis3.fits")  # NAXIS3 = 1
    files = [*m13_files.values(), tmp_path / "scaled.fits", tmp_path / "scaled.fits.gz", tmp_path / "naxis3.fits"]
    rectangles = [(0, 300, 0, 200), (10, 60, 5, 45), (5, 25, 0, 200), (250, 300, 180, 200)]
    for band_bytes in (0, fitsio.SECTION_BAND_BYTES):  # rectangles read row by row, and as bands
        monkeypatch.setattr(fitsio, "SECTION_BAND_BYTES", band_bytes)
        for path in files:
            whole = read_image(str(path))
            with fitsio.Sections(str(path)) as image:
                assert image.shape == whole.data.shape
                for y0, y1, x0, x1 in rectangles:
                    data, mask = image.read(y0, y1, x0, x1)
                    np.testing.assert_array_equal(data, whole.data[y0:y1, x0:x1])
                    np.testing.assert_array_equal(mask, whole.mask[y0:y1, x0:x1])
    with fitsio.Sections(str(tmp_path / "scaled.fits")) as image:
        assert image.read(17, 18, 40, 41)[1].all()


@pytest.fixture(scope="module")
def plain_mosaic(tmp_path_factory):
    """A local multi-extension file of plain float32 images (NaN and infinite pixels, odd sizes)."""
    rng = np.random.default_rng(11)
    first = rng.normal(size=(61, 47)).astype(np.float32)
    second = rng.normal(size=(53, 71)).astype(np.float32)
    first[3, 5], first[40, 46], second[0, 0], second[52, 70] = np.nan, np.inf, -np.inf, np.nan
    path = tmp_path_factory.mktemp("plain") / "mosaic.fits"
    header = fits.Header({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 10.0, "CRVAL2": -5.0,
                          "CRPIX1": 20.0, "CRPIX2": 30.0, "CD1_1": -1e-4, "CD2_2": 1e-4})
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(first, header), fits.ImageHDU(second, name="SCI2")]).writeto(path)
    return path


@settings(deadline=None, max_examples=60)
@given(hdu=st.sampled_from([1, 2]), corners=st.tuples(*[st.floats(0, 1)] * 4), band_bytes=st.sampled_from([0, 2**20]))
@example(hdu=1, corners=(0.0, 0.0, 1.0, 1.0), band_bytes=0)  # a column past the row's end: cut, not the next row's
def test_sections_by_offset_read_what_astropy_reads(plain_mosaic, hdu, corners, band_bytes):
    """A plain float32 image of a local file is read by offset (row by row or as bands): the same
    pixels, mask and header as astropy's section gives, for any rectangle of any extension, cut to
    the image as a NumPy slice is."""
    with fitsio.Sections(str(plain_mosaic), hdu) as image:
        assert image._plain is not None  # the offset reader, not astropy
        ny, nx = image.shape
        y0, y1 = sorted(int(c * ny) for c in corners[:2])
        x0, x1 = sorted(int(c * nx) for c in corners[2:])
        y1, x1 = max(y1, y0 + 1), max(x1, x0 + 1)
        original = fitsio.SECTION_BAND_BYTES
        fitsio.SECTION_BAND_BYTES = band_bytes
        try:
            data, mask = image.read(y0, y1, x0, x1)
        finally:
            fitsio.SECTION_BAND_BYTES = original
    with fits.open(plain_mosaic) as hdul:
        expected = hdul[hdu].data[y0:y1, x0:x1].astype(np.float32)
        expected_header = hdul[hdu].header
    np.testing.assert_array_equal(mask, ~np.isfinite(expected))
    np.testing.assert_array_equal(data, np.where(mask, np.nan, expected))
    assert data.dtype == np.float32 and data.dtype.isnative
    assert image.header.tostring() == expected_header.tostring()


def test_sections_by_offset_say_when_the_file_ends_early(plain_mosaic, tmp_path):
    """A file cut short is refused when opened (its headers declare more); one cut short while open
    (rewritten in place) fails the read with a one-line TruncatedFile, not with garbage pixels."""
    cut = tmp_path / "cut.fits"
    cut.write_bytes(plain_mosaic.read_bytes()[:-2880 * 2])
    with pytest.raises(errors.TruncatedFile, match="truncated upload"), fitsio.Sections(str(cut), 2):
        pass
    whole = tmp_path / "whole.fits"
    whole.write_bytes(plain_mosaic.read_bytes())
    with fitsio.Sections(str(whole), 2) as image:
        assert image.read(0, 53, 0, 71)[0].shape == (53, 71)
        with open(whole, "r+b") as handle:
            handle.truncate(whole.stat().st_size - 2880 * 2)
        with pytest.raises(errors.TruncatedFile, match=r"cannot read pixels \[40:53, 0:71\]: the file ends \d+ bytes early"):
            image.read(40, 53, 0, 71)
