"""The whole pipeline: a known, spatially varying lag is recovered, on a real distributed cluster."""

from __future__ import annotations

import json
import re

import dask
import numpy as np
import pytest
import sunpy.map
from astropy.io import fits
from PIL import Image
from solar_series import T0, lag_request, surface_coords

from skysift.timelag.align import cutout_header
from skysift.timelag.errors import SeriesNotFound
from skysift.timelag.index import LocalIndex
from skysift.timelag.pipeline import (
    find_channel,
    find_series,
    plan_cubes,
    plan_request,
    reference_header,
    run_timelag,
)
from skysift.timelag.request import TimeLagRequest


def test_known_lag_map_is_recovered_within_one_cadence_on_local_cluster(lag_series, local_cluster, tmp_path):
    request = TimeLagRequest.parse(lag_request(lag_series, tmp_path / "lag.fits", max_lag_s=3600.0))
    summary = run_timelag(request, LocalIndex(lag_series.home), local_cluster)

    with fits.open(tmp_path / "lag.fits") as hdul:
        lag, header, peak = hdul[0].data, hdul[0].header, hdul["PEAKCORR"].data
    lon, lat = surface_coords(header, T0)
    truth = lag_series.lag_truth_s(lon, lat)
    assert np.ptp(truth) > 1500  # the lag really varies across the field (0 .. 30 min)
    within = np.abs(lag - truth) <= lag_series.cadence_s
    assert within.mean() >= 0.95
    assert np.nanmedian(peak) > 0.9
    assert summary["frames"] == [60, 60] and summary["finite_fraction"] == 1.0
    assert header["BUNIT"] == "s" and header["CHAN_A"] == 193 and header["CHAN_B"] == 171


def test_without_exposure_normalisation_the_lag_is_lost(lag_series, monkeypatch):
    """The control: the synthetic exposures vary, so skipping normalisation must break recovery."""
    import skysift.timelag.pipeline as pipeline

    monkeypatch.setattr(pipeline, "normalise_exposure", lambda frame, exptime_s: frame)
    request = TimeLagRequest.parse(lag_request(lag_series, "unused.fits", max_lag_s=3600.0))
    plan = plan_request(request, LocalIndex(lag_series.home))
    with dask.config.set(scheduler="threads", num_workers=2):
        lag = plan.lag_s[::4, ::4].compute()
    truth = lag_series.lag_truth_s(*surface_coords(plan.target, T0))[::4, ::4]
    assert (np.abs(lag - truth) <= lag_series.cadence_s).mean() < 0.8


def test_distributed_and_threaded_results_are_identical(small_lag_series, local_cluster, tmp_path):
    request = TimeLagRequest.parse(lag_request(small_lag_series, tmp_path / "d.fits"))
    run_timelag(request, LocalIndex(small_lag_series.home), local_cluster)
    plan = plan_request(request, LocalIndex(small_lag_series.home))
    with dask.config.set(scheduler="threads"):
        lag, peak = dask.compute(plan.lag_s, plan.peak)
    np.testing.assert_array_equal(fits.getdata(tmp_path / "d.fits"), lag)
    np.testing.assert_array_equal(fits.getdata(tmp_path / "d.fits", "PEAKCORR"), peak)


def test_outputs_are_a_sunpy_map_and_a_png_with_a_colour_bar(small_lag_series, tmp_path):
    request = TimeLagRequest.parse(lag_request(small_lag_series, tmp_path / "out" / "lag.fits"))
    with dask.config.set(scheduler="sync"):
        summary = run_timelag(request, LocalIndex(small_lag_series.home))
    lag_map, peak_map = sunpy.map.Map(tmp_path / "out" / "lag.fits")  # one map per HDU
    assert peak_map.meta["btype"] == "peak cross-correlation"
    assert lag_map.coordinate_frame.name == "helioprojective"
    assert lag_map.observer_coordinate is not None
    assert lag_map.data.shape == (40, 40) and lag_map.unit.to_string() == "s"
    with Image.open(tmp_path / "out" / "lag.png") as png:
        assert png.size == (640, 560)
    assert json.loads(json.dumps(summary))["png"].endswith("lag.png")


def test_wrong_channel_fails_with_series_not_found(small_lag_series, tmp_path):
    request = TimeLagRequest.parse(lag_request(small_lag_series, tmp_path / "x.fits", channel_b=94))
    with pytest.raises(SeriesNotFound, match=r"94\.0 A"):
        plan_request(request, LocalIndex(small_lag_series.home))


def test_a_gap_in_one_channel_is_bridged_with_a_warning(small_lag_series, caplog):
    request = TimeLagRequest.parse(lag_request(small_lag_series, "unused.fits"))
    index = LocalIndex(small_lag_series.home)
    table_a, table_b = find_series(index, request)
    gappy = table_b.drop(index=range(4, 8)).reset_index(drop=True)  # 20 minutes of 171 missing
    a, b = find_channel(index, request, 193, table_a), find_channel(index, request, 171, gappy)
    target = cutout_header(reference_header(a), small_lag_series.center_arcsec, (40, 40))
    with caplog.at_level("WARNING", logger="skysift.timelag.pipeline"):
        cube_a, cube_b, grid = plan_cubes(a, b, target, 240.0)
    gaps = [float(m) for m in re.findall(r"171 A: the time grid bridges a (\d+) s gap", caplog.text)]
    assert len(gaps) == 1 and 1150 < gaps[0] < 1250  # frames 3 and 8 are ~1200 s apart
    assert cube_b.shape == cube_a.shape == (grid.size, 10, 10)
