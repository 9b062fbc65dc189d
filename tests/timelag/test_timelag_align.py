"""Re-alignment with solar differential rotation: a feature stays in its cutout pixel."""

from __future__ import annotations

import astropy.units as u
import dask
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS
from solar_series import T0, centroid_px
from sunpy.coordinates import HeliographicStonyhurst

from skysift.timelag.align import cutout_header, source_bbox
from skysift.timelag.errors import FrameUnusable
from skysift.timelag.index import LocalIndex
from skysift.timelag.pipeline import aligned_frames, find_channel, reference_header
from skysift.timelag.request import TimeLagRequest


def _request(series, **overrides) -> TimeLagRequest:
    values = dict(channel_a=171, channel_b=171, start=series.start, end=series.end,
                  center_arcsec=series.center_arcsec, fov_arcsec=(100, 100), cadence_s=240, max_lag_s=3600,
                  index=str(series.home), output="unused.fits")
    values.update(overrides)
    return TimeLagRequest(**values)


def test_feature_is_realigned_within_one_pixel_over_twelve_hours(rotation_series):
    channel = find_channel(LocalIndex(rotation_series.home), _request(rotation_series), 171)
    target = cutout_header(reference_header(channel), rotation_series.center_arcsec, (100, 100))
    lon, lat = rotation_series.feature_hgs_deg
    feature = SkyCoord(lon * u.deg, lat * u.deg, 695_700 * u.km,
                       frame=HeliographicStonyhurst(obstime=T0.replace(tzinfo=None).isoformat()))
    expected = np.array(WCS(target).world_to_pixel(feature), dtype=float)

    with dask.config.set(scheduler="sync"):
        frames = dask.compute(*aligned_frames(channel, target))

    raw = [centroid_px(fits.getdata(p), 200.0) for p in rotation_series.paths]
    assert np.hypot(*np.subtract(raw[-1], raw[0])) > 20  # the feature really moves in the raw frames
    for frame in frames:
        assert np.hypot(*(np.array(centroid_px(frame, 50.0)) - expected)) < 1.0


def test_source_bbox_follows_rotation_and_reads_a_fraction_of_the_frame(rotation_series):
    channel = find_channel(LocalIndex(rotation_series.home), _request(rotation_series), 171)
    target = cutout_header(reference_header(channel), rotation_series.center_arcsec, (100, 100))
    boxes = [source_bbox(h, target) for h in channel.headers]
    assert all(b is not None for b in boxes)
    x_starts = [b[2] for b in boxes]
    assert x_starts == sorted(x_starts) and x_starts[-1] - x_starts[0] > 20  # westward drift
    assert all((b[1] - b[0]) * (b[3] - b[2]) < 0.5 * 64 * 64 for b in boxes)


def test_cutout_header_has_requested_geometry_and_observer(rotation_series):
    reference = fits.getheader(rotation_series.paths[0])
    header = cutout_header(reference, (-125.0, 250.0), (500.0, 300.0), scale_arcsec=2.5)
    assert (header["NAXIS1"], header["NAXIS2"]) == (200, 120)
    assert header["CTYPE1"].startswith("HPLN") and header["CDELT1"] == pytest.approx(2.5)
    assert header["DSUN_OBS"] == pytest.approx(reference["DSUN_OBS"])
    centre = WCS(header).pixel_to_world(99.5, 59.5)
    assert centre.Tx.to_value(u.arcsec) == pytest.approx(-125.0, abs=0.01)
    assert centre.Ty.to_value(u.arcsec) == pytest.approx(250.0, abs=0.01)


def test_header_without_solar_wcs_is_rejected():
    header = fits.Header({"NAXIS": 2, "NAXIS1": 8, "NAXIS2": 8, "CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN",
                          "CRVAL1": 10.0, "CRVAL2": 20.0, "CDELT1": -0.001, "CDELT2": 0.001,
                          "DATE-OBS": "2011-02-15T00:00:00"})
    with pytest.raises(FrameUnusable) as info:
        cutout_header(header, (0, 0), (10, 10))
    assert info.value.reason == "frame_unusable"
