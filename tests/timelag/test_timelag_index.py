"""Finding a series in the images index: local tables written by skysift, Athena's SQL dialect."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from solar_series import T0, write_images_index

from skysift.timelag.errors import IndexUnavailable, InvalidRequest, SeriesNotFound
from skysift.timelag.index import (
    AthenaIndex,
    LocalIndex,
    SeriesQuery,
    open_index,
    require_series,
    search_series,
)


def test_search_returns_paths_of_one_channel_in_time_order(small_lag_series):
    index = LocalIndex(small_lag_series.home)
    frames = search_series(index, SeriesQuery(small_lag_series.start, small_lag_series.end, 171.0, instrument="aia"))
    assert len(frames) == len(small_lag_series.paths_b)
    assert sorted(frames.uri) == sorted(str(p) for p in small_lag_series.paths_b)
    assert frames.obs_time.is_monotonic_increasing
    assert set(frames.wavelength_angstrom) == {171.0}
    assert (frames.exptime_s > 1.4).all()


def test_time_window_and_instrument_restrict_the_series(small_lag_series):
    index = LocalIndex(small_lag_series.home)
    window = SeriesQuery(T0 + timedelta(minutes=10), T0 + timedelta(minutes=25), 193.0)
    assert len(search_series(index, window)) == 4  # frames at 12, 16, 20, 24 min (+-10 s)
    assert search_series(index, SeriesQuery(small_lag_series.start, small_lag_series.end, 193.0, instrument="EIT")).empty
    assert search_series(index, SeriesQuery(small_lag_series.start, small_lag_series.end, 211.0)).empty


def test_reindexed_frames_appear_once(small_lag_series, tmp_path):
    write_images_index(tmp_path, small_lag_series.paths_a[:3])
    for part in list((tmp_path / "tables/images").rglob("*.parquet")):  # a second row per observation
        shutil.copyfile(part, part.with_name("v2-" + part.name))
    assert len(list((tmp_path / "tables/images").rglob("*.parquet"))) == 6
    frames = search_series(LocalIndex(tmp_path), SeriesQuery(small_lag_series.start, small_lag_series.end, 193.0))
    assert len(frames) == 3


def test_missing_series_names_the_query(small_lag_series):
    with pytest.raises(SeriesNotFound, match=r"304\.0 A") as info:
        require_series(LocalIndex(small_lag_series.home), SeriesQuery(small_lag_series.start, small_lag_series.end, 304.0))
    assert info.value.reason == "series_not_found"


def test_home_without_tables_is_reported(tmp_path: Path):
    with pytest.raises(IndexUnavailable, match="no images table"):
        open_index(tmp_path)


def test_unsafe_instrument_is_rejected():
    with pytest.raises(InvalidRequest):
        SeriesQuery(T0, T0 + timedelta(hours=1), 171.0, instrument="AIA' OR 1=1 --")


def test_athena_query_is_partition_pruned_and_uses_trino_literals():
    index = open_index("athena://skysift_db?workgroup=skysift&table=images_v1")
    assert isinstance(index, AthenaIndex) and index.workgroup == "skysift"
    sql = SeriesQuery(T0, T0 + timedelta(hours=30), 171.0, instrument="AIA").to_sql(index)
    assert "FROM images_v1" in sql
    assert "obs_night BETWEEN '2011-02-15' AND '2011-02-16'" in sql
    assert "obs_time >= TIMESTAMP '2011-02-15 00:00:00.000'" in sql
    assert "wavelength_angstrom BETWEEN 170.5 AND 171.5" in sql
