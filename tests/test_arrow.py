"""skysift.catalog.arrow builds and reads the same Arrow data as pyarrow's own conversions,
and a ``skysift run`` process never imports pandas (the reason the module exists)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skysift.catalog.arrow import (
    numpy_column,
    numpy_values,
    python_column,
    read_parquet,
    repeated_string,
    repeated_timestamp,
    rows_of,
    string_codes,
    table_from_rows,
    write_parquet,
)
from skysift.catalog.records import ImageRecord, ImageStatus, Route
from skysift.catalog.schema import IMAGES_SCHEMA, TIMESTAMP

NUMERIC = [pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint32(), pa.uint64(), pa.float32(), pa.float64()]
floats = st.floats(allow_nan=True, allow_infinity=True, width=32)
#: pyarrow's own conversions (the reference) import pandas on their first call: no deadline
relaxed = settings(deadline=None, max_examples=60)
moments = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC))


def _nan_as_text(value):
    """A value with every NaN in it replaced by "NaN" (NaN != NaN, and Arrow's ``equals`` agrees)."""
    if isinstance(value, float) and value != value:
        return "NaN"
    if isinstance(value, list):
        return [_nan_as_text(v) for v in value]
    if isinstance(value, dict):
        return {k: _nan_as_text(v) for k, v in value.items()}
    return value


def _same(ours: pa.Array, theirs: pa.Array) -> None:
    assert ours.validate(full=True) is None
    assert ours.type == theirs.type
    assert ours.null_count == theirs.null_count
    assert _nan_as_text(ours.to_pylist()) == _nan_as_text(theirs.to_pylist()), (ours, theirs)


@relaxed
@given(st.lists(floats, max_size=40), st.sampled_from([pa.float32(), pa.float64()]))
def test_floats_as_from_pandas(values, type_):
    data = np.array(values, np.float64)
    _same(numpy_column(data, type_), pa.array(data, type_, from_pandas=True))


@relaxed
@given(st.lists(st.integers(-128, 127), max_size=40), st.sampled_from(NUMERIC), st.data())
def test_integers_and_masks(values, type_, draw):
    data = np.array(values, np.int64)
    if pa.types.is_unsigned_integer(type_):
        data = np.abs(data)
    mask = np.array(draw.draw(st.lists(st.booleans(), min_size=len(values), max_size=len(values))), bool)
    _same(numpy_column(data, type_), pa.array(data, type_))
    _same(numpy_column(data, type_, mask=mask), pa.array(data, type_, mask=mask))


@relaxed
@given(st.lists(st.one_of(st.none(), st.floats(allow_nan=True), st.integers(-9, 9)), max_size=30),
       st.sampled_from([pa.float64(), pa.float32()]))
def test_object_columns_with_none(values, type_):
    """A column of Python values with None (a pixel catalog's sky columns) as pyarrow converts it."""
    data = np.array(values, dtype=object) if values else np.empty(0, object)
    _same(numpy_column(data, type_), pa.array(data, type_, from_pandas=True))
    integers = np.array([v if v is None or isinstance(v, int) else None for v in values], dtype=object)
    _same(numpy_column(integers, pa.int64()), pa.array(integers, pa.int64(), from_pandas=True))


@relaxed
@given(st.lists(st.booleans(), max_size=70))
def test_booleans(values):
    _same(numpy_column(np.array(values, bool), pa.bool_()), pa.array(values, pa.bool_()))


@relaxed
@given(st.lists(st.one_of(st.none(), st.text(max_size=12)), max_size=30))
def test_strings(values):
    data = np.array(values, dtype=object) if values else np.empty(0, object)
    _same(numpy_column(data, pa.string()), pa.array(values, pa.string()))
    _same(python_column(values, pa.string()), pa.array(values, pa.string()))


@relaxed
@given(st.lists(st.one_of(st.none(), moments), max_size=20))
def test_timestamps(values):
    _same(python_column(values, TIMESTAMP), pa.array(values, TIMESTAMP))
    naive = [None if v is None else v.replace(tzinfo=None) for v in values]  # naive is UTC
    _same(python_column(naive, TIMESTAMP), pa.array(values, TIMESTAMP))


@relaxed
@given(st.one_of(st.none(), moments), st.integers(0, 9))
def test_repeated_timestamp(value, n):
    _same(repeated_timestamp(value, n, TIMESTAMP), pa.array([value] * n, TIMESTAMP))


@relaxed
@given(st.one_of(st.none(), st.text(max_size=8)), st.integers(0, 20))
def test_repeated_string(value, n):
    _same(repeated_string(value, n), pa.array([value] * n, pa.string()))


@relaxed
@given(st.lists(st.one_of(st.none(), st.lists(st.floats(allow_nan=True), max_size=4)), max_size=10))
def test_lists_and_nan_kept(values):
    type_ = pa.list_(pa.float64())
    _same(python_column(values, type_), pa.array(values, type_))


@relaxed
@given(st.lists(st.one_of(st.none(), st.integers(-5, 5)), max_size=30), st.sampled_from([pa.int32(), pa.int64(), pa.float64()]),
       st.integers(0, 3), st.sampled_from([None, 0, -1]))
def test_values_back_as_to_numpy(values, type_, cut, null):
    column = pa.chunked_array([pa.array(values[:cut], type_), pa.array(values[cut:], type_)], type_).slice(min(cut, 1))
    expected = (column.fill_null(null) if null is not None else column).to_numpy(zero_copy_only=False)
    ours = numpy_values(column, null=null)
    np.testing.assert_array_equal(ours, expected)
    assert ours.dtype == expected.dtype


@relaxed
@given(st.lists(st.one_of(st.none(), st.booleans()), max_size=40), st.integers(0, 7))
def test_booleans_back(values, offset):
    column = pa.array(values, pa.bool_()).slice(min(offset, len(values)))
    np.testing.assert_array_equal(numpy_values(column), column.fill_null(False).to_numpy(zero_copy_only=False))


@relaxed
@given(st.lists(st.one_of(st.none(), st.sampled_from(["g", "r", "i", "é", "", "img01", "unknown"])), max_size=40),
       st.integers(0, 40), st.integers(0, 5))
def test_string_codes_as_numpy_unique(values, cut, offset):
    """The distinct values, sorted, and each row's index among them: what ``np.unique`` of the
    column's Python strings gives, for chunked, sliced columns with nulls."""
    column = pa.chunked_array([pa.array(values[:cut], pa.string()), pa.array(values[cut:], pa.string())],
                              pa.string()).slice(min(offset, len(values)))
    names, codes = string_codes(column, null="unknown")
    strings = numpy_values(column, null="unknown")
    expected_names, expected_codes = np.unique(strings, return_inverse=True) if len(strings) else ([], [])
    assert names.dtype == object and codes.dtype == np.int64 and len(codes) == len(column)
    assert list(names) == list(expected_names)
    assert codes.tolist() == list(expected_codes)


def test_strings_back_and_unknown_types():
    column = pa.chunked_array([pa.array(["a", None]), pa.array(["é"])])
    assert list(numpy_values(column, null="unknown")) == ["a", "unknown", "é"]
    with pytest.raises(TypeError, match="no Arrow"):
        numpy_values(pa.array([[1.0]]))
    with pytest.raises(TypeError, match="no NumPy conversion"):
        numpy_column(np.zeros(2), pa.decimal128(5, 2))


def test_rows_and_files_round_trip(tmp_path):
    record = ImageRecord(image_id="abc", uri="/x.fits", status=ImageStatus.OK, route=Route.LOCAL,
                         obs_time=datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC), aperture_radii_px=[2.0, np.nan],
                         processed_at=datetime.now(UTC) - timedelta(days=1))
    row = {name: record.to_row()[name] for name in IMAGES_SCHEMA.names}
    ours = table_from_rows([row], IMAGES_SCHEMA)
    theirs = pa.Table.from_pylist([row], schema=IMAGES_SCHEMA)
    assert ours.schema == theirs.schema
    assert _nan_as_text(ours.to_pylist()) == _nan_as_text(theirs.to_pylist())
    pq.write_table(ours, tmp_path / "images.parquet")
    back = read_parquet(tmp_path / "images.parquet")
    reference = pq.read_table(tmp_path / "images.parquet")
    assert back.schema == reference.schema
    assert _nan_as_text(back.to_pylist()) == _nan_as_text(reference.to_pylist())
    assert read_parquet(tmp_path / "images.parquet", columns=["uri"]).column_names == ["uri"]
    assert _nan_as_text(rows_of(back)) == _nan_as_text(back.to_pylist())


SKYSIFT = [sys.executable, "-m", "skysift.cli.main"]


def test_a_run_never_imports_pandas(tmp_path, make_sky):
    """One image on a fresh home, then two later images of the same sky with other sources
    (new sources: forced photometry, alerts, packets, objects updated; two at a time in
    worker processes), then a third after `skysift compact` (the earlier rows read from
    compacted files): no process of any run imports pandas (~0.2 s of a run's start)."""
    first, _ = make_sky("first.fits", seed=1)
    (tmp_path / "later").mkdir()
    for k in range(2):
        make_sky(f"later/visit{k}.fits", seed=2 + k, header={"DATE-OBS": f"2026-01-02T0{2 + k}:00:00"})  # one night
    last, _ = make_sky("last.fits", seed=4, header={"DATE-OBS": "2026-01-04T00:00:00"})
    script = textwrap.dedent("""
        import os, sys
        def hook(event, args):
            if event == "import" and args[0] == "pandas":
                with open(os.environ["PANDAS_SEEN"], "a") as seen:
                    seen.write(f"{os.getpid()}\\n")
        sys.addaudithook(hook)
        from skysift.cli.main import main
        sys.argv = ["skysift"] + sys.argv[1:]
        main()
    """)
    seen = tmp_path / "seen"
    env = {**os.environ, "PANDAS_SEEN": str(seen)}
    for target in (first, tmp_path / "later", last):
        if target == last:
            compacted = subprocess.run([*SKYSIFT, "--home", str(tmp_path / "home"), "compact"], capture_output=True,
                                       text=True, timeout=300)
            assert compacted.returncode == 0, compacted.stderr[-2000:]
            assert list((tmp_path / "home" / "tables" / "sources").glob("*/*/*/compacted-*.parquet"))
        done = subprocess.run([sys.executable, "-c", script, "--home", str(tmp_path / "home"), "run", str(target)],
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert not seen.exists(), f"pandas imported by `skysift run {target.name}`"
        assert ("alerts" in done.stdout and " 0 alerts" not in done.stdout) or target == first, done.stdout[-1500:]


@settings(deadline=None, max_examples=25)
@given(values=st.lists(st.floats(allow_nan=False, width=32), min_size=1, max_size=50))
def test_numbers_survive_parquet(values, tmp_path_factory):
    path = tmp_path_factory.mktemp("pq") / "x.parquet"
    pq.write_table(pa.Table.from_arrays([numpy_column(np.array(values, np.float32), pa.float32())], names=["v"]), path)
    np.testing.assert_array_equal(numpy_values(read_parquet(path)["v"]), np.array(values, np.float32))


def test_table_files_are_written_without_dictionary_pages_and_read_back_the_same(tmp_path):
    """:func:`write_parquet`: zstd, no dictionary (ids that do not repeat, or that zstd takes as well)."""
    table = pa.table({"source_id": [f"img:{i}" for i in range(500)], "image_id": ["img"] * 500,
                      "flux": np.linspace(0, 1, 500), "ids": [[f"img:{i}"] for i in range(500)]})
    write_parquet(table, tmp_path / "t.parquet")
    metadata = pq.ParquetFile(tmp_path / "t.parquet").metadata
    for i in range(metadata.num_columns):
        column = metadata.row_group(0).column(i)
        assert column.compression == "ZSTD"
        assert not any("DICTIONARY" in encoding for encoding in column.encodings), column.path_in_schema
    assert read_parquet(tmp_path / "t.parquet").equals(table)
