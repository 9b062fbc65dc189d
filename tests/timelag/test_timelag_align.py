"""Re-alignment with solar differential rotation: a feature stays in its cutout pixel."""

from __future__ import annotations

import threading

import astropy.units as u
import dask
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS
from solar_series import T0, centroid_px
from sunpy.coordinates import HeliographicStonyhurst

from skysift.timelag.align import check_cutout_in_field, cutout_header, solar_wcs, source_bbox
from skysift.timelag.errors import CutoutOutsideField, FrameUnusable
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


def test_the_solar_surface_switch_is_held_by_one_thread_at_a_time():
    # sunpy's propagate_with_solar_surface flips a module global: two threads using it at once turn the
    # rotation off under each other (and can leave it on for good), so the time-lag code takes a lock
    from sunpy.coordinates import _transformations

    from skysift.timelag import align

    inside, release, seen = threading.Event(), threading.Event(), []

    def first():
        with align._following_the_surface():
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=first)
    thread.start()
    assert inside.wait(10)
    seen.append(align._SURFACE_LOCK.acquire(blocking=False))  # a second thread may not enter now
    release.set()
    thread.join(10)
    assert seen == [False] and not _transformations._autoapply_diffrot  # and the switch is off again


def test_threads_realign_exactly_as_one_thread_does(rotation_series):
    channel = find_channel(LocalIndex(rotation_series.home), _request(rotation_series), 171)
    target = cutout_header(reference_header(channel), rotation_series.center_arcsec, (100, 100))
    with dask.config.set(scheduler="sync"):
        serial = dask.compute(*aligned_frames(channel, target))
    with dask.config.set(scheduler="threads", num_workers=4):
        threaded = dask.compute(*aligned_frames(channel, target))
    for one, many in zip(serial, threaded, strict=True):
        np.testing.assert_array_equal(many, one)


@pytest.mark.parametrize(("center", "where"), [((2000.0, 2000.0), "entirely off the solar disk"),
                                               ((600.0, -600.0), "outside the frames' field of view")])
def test_a_cutout_off_the_disk_or_outside_the_frames_is_refused(rotation_series, center, where):
    reference = fits.getheader(rotation_series.paths[0])
    target = cutout_header(reference, center, (100, 100))
    with pytest.raises(CutoutOutsideField, match=where) as info:
        check_cutout_in_field(reference, target)
    assert info.value.reason == "cutout_outside_field" and not info.value.transient


def test_a_cutout_partly_on_the_frame_is_accepted(rotation_series):
    reference = fits.getheader(rotation_series.paths[0])
    corner = solar_wcs(reference).pixel_to_world(0, 0)  # the frame's corner: three quarters of the cutout miss it
    check_cutout_in_field(reference, cutout_header(reference, (corner.Tx.to_value(u.arcsec),
                                                               corner.Ty.to_value(u.arcsec)), (100, 100)))
