"""skysift.core.metadata: what headers written by different observatories say.

Each case is a header as some pipeline writes it and the value it means, worked out by hand
(MJD 0 is 1858-11-17T00:00 UTC; TAI - UTC = 37 s and TT - TAI = 32.184 s since 2017).
(The exposure keywords' order and COADDS are tested in tests/test_calibration.py.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from astropy.io.fits import Header

from skysift.core.metadata import (
    band_name,
    exposure_seconds,
    observation_time,
    slug,
    survey_name,
    text_keyword,
    wavelength_angstrom,
)

MJD_ZERO = datetime(1858, 11, 17, tzinfo=UTC)


def header(*cards) -> Header:
    return Header(list(cards))


@pytest.mark.parametrize(("cards", "expected"), [
    ([("DATE-OBS", "2026-01-01T00:00:00")], datetime(2026, 1, 1, tzinfo=UTC)),
    ([("DATE-OBS", "2026-01-01T00:00:00Z")], datetime(2026, 1, 1, tzinfo=UTC)),  # ISO 8601's 'Z'
    ([("DATE-OBS", "2026-01-01"), ("TIME-OBS", "12:34:56.5")], datetime(2026, 1, 1, 12, 34, 56, 500000, tzinfo=UTC)),
    ([("DATE-OBS", "2026-01-01"), ("UT", "12:34:56")], datetime(2026, 1, 1, 12, 34, 56, tzinfo=UTC)),  # KPNO, CTIO
    ([("DATE-OBS", "2026-01-01")], datetime(2026, 1, 1, tzinfo=UTC)),  # a date alone: its start
    ([("DATE_OBS", "2026-01-01T01:02:03")], datetime(2026, 1, 1, 1, 2, 3, tzinfo=UTC)),
    ([("DATE-BEG", "2026-01-01T01:02:03")], datetime(2026, 1, 1, 1, 2, 3, tzinfo=UTC)),
    ([("MJD-OBS", 60310.5)], MJD_ZERO + timedelta(days=60310.5)),
    ([("MJD_OBS", 60310.25)], MJD_ZERO + timedelta(days=60310.25)),
    ([("DATE-OBS", "2026-01-01T00:00:00"), ("MJD-OBS", 50000.0)], datetime(2026, 1, 1, tzinfo=UTC)),  # DATE-OBS first
    ([("DATE-OBS", ""), ("MJD-OBS", 60310.5)], MJD_ZERO + timedelta(days=60310.5)),  # a blank card is no date
    ([("DATE-OBS", "2017-01-01T00:00:37"), ("TIMESYS", "TAI")], datetime(2017, 1, 1, tzinfo=UTC)),
    ([("DATE-OBS", "2017-01-01T00:01:09.184"), ("TIMESYS", "TT")], datetime(2017, 1, 1, tzinfo=UTC)),
    ([("DATE-OBS", "2026-01-01T00:00:00"), ("TIMESYS", "GPS")], datetime(2026, 1, 1, tzinfo=UTC)),  # unknown: UTC
    # MJD-OBS is in TIMESYS's scale too (Chandra writes TT): MJD 60310 is 2024-01-01
    ([("MJD-OBS", 60310.0), ("TIMESYS", "TAI")], datetime(2023, 12, 31, 23, 59, 23, tzinfo=UTC)),
    ([("MJD-OBS", 60310.0), ("TIMESYS", "TT")], datetime(2023, 12, 31, 23, 58, 50, 816000, tzinfo=UTC)),
])
def test_observation_time_in_utc(cards, expected):
    when = observation_time(header(*cards))
    assert when == expected and when.tzinfo == UTC


@pytest.mark.parametrize("cards", [
    [("DATE-OBS", "not a date")],
    [("MJD-OBS", "abc")],
    [("OBJECT", "M13")],
])
def test_no_observation_time_rather_than_a_guess(cards):
    assert observation_time(header(*cards)) is None


@pytest.mark.parametrize(("cards", "angstrom"), [
    ([("WAVELNTH", 171)], 171.0),  # SDO/AIA: Angstrom unless WAVEUNIT says otherwise
    ([("WAVELNTH", 500), ("WAVEUNIT", "nm")], 5000.0),
    ([("WAVELNTH", 1.71e-8), ("WAVEUNIT", "m")], 171.0),
    ([("WAVELNTH", 1), ("WAVEUNIT", "furlong")], None),  # no unit astropy knows
    ([("PHOTPLAM", 5921.0), ("FILTER", "V")], 5921.0),  # HST's pivot wavelength before the band's
    ([("FILTER", "r"), ("WAVELNTH", 6000.0)], 6000.0),  # the header's own wavelength first
    ([("FILTER", "V")], 5510.0),
    ([("FILTER", " r ")], 6260.0),
    ([("BAND", "Ks")], 21590.0),
    ([("FILTER", "F606W")], None),  # a band without a tabulated wavelength
    ([], None),
])
def test_wavelength_in_angstrom(cards, angstrom):
    assert wavelength_angstrom(header(*cards)) == (pytest.approx(angstrom, rel=1e-12) if angstrom else None)


@pytest.mark.parametrize(("cards", "band"), [
    ([("FILTER", "r")], "r"),
    ([("FILTER", "SDSS r'")], "sdss-r"),  # partition-safe
    ([("FILTNAM1", "F606W")], "f606w"),  # HST WFPC2
    ([("FILTER1", "F814W")], "f814w"),
    ([("FILTER", ""), ("BAND", "Ks")], "ks"),  # a blank card is skipped
    ([("WAVELNTH", 171)], "171a"),  # no band: the wavelength names it
    ([("WAVELNTH", 171.5)], "171p5a"),
    ([], "unknown"),
])
def test_band_name(cards, band):
    assert band_name(header(*cards)) == band


@pytest.mark.parametrize(("cards", "default", "survey"), [
    ([("SURVEY", "My Survey"), ("TELESCOP", "CFHT")], "configured", "my-survey"),  # SURVEY wins
    ([("TELESCOP", "SDO/AIA")], "configured", "configured"),  # then the configured default
    ([("TELESCOP", "SDO/AIA")], None, "sdo-aia"),
    ([("INSTRUME", "WFCAM")], None, "wfcam"),
    ([("ORIGIN", "NOAO-IRAF FITS")], None, "noao-iraf-fits"),
    ([("SURVEY", "   ")], None, "unknown"),
    ([], None, "unknown"),
])
def test_survey_name(cards, default, survey):
    assert survey_name(header(*cards), default) == survey


@pytest.mark.parametrize(("text", "expected"), [
    ("  Hello World!! ", "hello-world"),
    ("a_b-c", "a_b-c"),
    ("obs_night=2026-01-01/../x", "obs_night-2026-01-01-x"),  # no '=' or '/' into a partition path
    ("///", "unknown"),
    ("", "unknown"),
])
def test_slug(text, expected):
    assert slug(text) == expected


@pytest.mark.parametrize(("cards", "seconds"), [
    ([("TEXPTIME", 100.0)], 100.0),  # HST: a combined product's total
    ([("ITIME", 2.0), ("NCOADDS", 5)], 10.0),  # NCOADDS as COADDS
    ([("EXPTIME", -5.0), ("EXPOSURE", 3.0)], 3.0),  # not positive: the next keyword
    ([("EXPTIME", 10**400)], None),  # an integer card beyond float range
])
def test_exposure_seconds(cards, seconds):
    assert exposure_seconds(header(*cards)) == seconds


def test_text_keyword_is_stripped_and_none_when_absent():
    assert text_keyword(header(("OBJECT", "  M13 ")), "TARGET", "OBJECT") == "M13"
    assert text_keyword(header(("OBJECT", "  ")), "OBJECT") is None
