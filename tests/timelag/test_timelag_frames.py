"""Frame reading: only the needed rectangle, plain or tile-compressed, with clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from solar_series import T0, frame_header

from skysift.errors import SourceNotFound
from skysift.timelag.errors import FrameUnusable
from skysift.timelag.frames import (
    Frame,
    frame_exposure_s,
    normalise_exposure,
    read_frame,
    read_header,
)


@pytest.fixture
def frames(tmp_path):
    """The same int16 frame (with BLANK pixels), plain in HDU 0 and RICE-compressed in HDU 1."""
    header = frame_header(T0, 171, (40, 50), 4.0, (0.0, 0.0), 2.0)
    data = (np.arange(40 * 50).reshape(40, 50) % 1000).astype(np.int16)
    data[5, 7] = -32768
    plain = fits.PrimaryHDU(data, header)
    plain.header["BLANK"] = -32768
    plain.writeto(tmp_path / "plain.fits")
    comp = fits.CompImageHDU(data, plain.header, compression_type="RICE_1")
    fits.HDUList([fits.PrimaryHDU(), comp]).writeto(tmp_path / "rice.fits")
    return tmp_path / "plain.fits", tmp_path / "rice.fits", data


def test_rectangle_reads_match_whole_frame_for_plain_and_compressed(frames):
    plain, rice, data = frames
    for uri, hdu in ((str(plain), 0), (str(rice), 1)):
        header = read_header(uri, hdu)
        part = read_frame(uri, hdu, header, (3, 20, 5, 30))
        np.testing.assert_array_equal(part.data[4:, :], data[7:20, 5:30].astype(np.float32))
        assert np.isnan(part.data[2, 2])  # BLANK -> NaN
        assert (part.header["NAXIS1"], part.header["NAXIS2"]) == (25, 17)
        assert part.header["CRPIX1"] == header["CRPIX1"] - 5 and part.header["CRPIX2"] == header["CRPIX2"] - 3


def test_headers_keep_only_what_the_analysis_uses(frames):
    header = read_header(str(frames[0]))
    assert {"DATE-OBS", "CRPIX1", "CDELT2", "HGLT_OBS", "DSUN_OBS", "WAVELNTH", "EXPTIME", "RSUN_REF"} <= set(header)
    assert "AIHIS860" not in header and "QUALLEV0" not in header and len(header) < 50


def test_exposure_normalisation_gives_counts_per_second():
    header = fits.Header({"EXPTIME": 2.0, "PIXLUNIT": "DN"})
    out = normalise_exposure(Frame(np.full((2, 2), 5.0, dtype=np.float32), header), frame_exposure_s(header))
    np.testing.assert_array_equal(out.data, 2.5)
    assert out.header["BUNIT"] == "DN/s" and out.data.dtype == np.float32


@pytest.mark.parametrize("exptime", [None, 0.0, -1.0])
def test_missing_or_zero_exposure_is_unusable(exptime):
    header = fits.Header({"EXPTIME": exptime} if exptime is not None else {})
    with pytest.raises(FrameUnusable, match="exposure"):
        frame_exposure_s(header, "x.fits")


def test_missing_file_and_non_image_hdu_have_named_errors(tmp_path, frames):
    with pytest.raises(SourceNotFound):
        read_header(str(tmp_path / "gone.fits"))
    with pytest.raises(FrameUnusable, match="not a 2-D image"):
        read_header(str(frames[1]), 0)  # the empty primary HDU in front of the compressed image
    with pytest.raises(FrameUnusable, match="no HDU 5"):
        read_header(str(frames[0]), 5)
