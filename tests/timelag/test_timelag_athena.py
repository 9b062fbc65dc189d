"""The Athena backend: the query awswrangler sends, and the frames parsed from Athena's CSV result.

moto's Athena does not evaluate SQL: it returns the rows queued here and writes them to
the S3 output location as CSV, which awswrangler then reads, exactly as with real Athena.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws
from moto.athena.models import QueryResults, athena_backends
from moto.core import DEFAULT_ACCOUNT_ID

from skysift.timelag.index import SeriesQuery, open_index, require_series

COLUMNS = [("image_id", "varchar"), ("uri", "varchar"), ("hdu", "integer"), ("obs_time", "timestamp"),
           ("exptime_s", "double"), ("wavelength_angstrom", "double"), ("telescope", "varchar"),
           ("instrument", "varchar"), ("nx", "integer"), ("ny", "integer"), ("survey", "varchar"),
           ("band", "varchar"), ("processed_at", "timestamp")]


def _athena_answers(rows: list[list[object]]) -> None:
    as_rows = [{"Data": [{"VarCharValue": str(v)} for v in values]} for values in [[c for c, _ in COLUMNS], *rows]]
    info = [{"CatalogName": "hive", "SchemaName": "skysift", "TableName": "images", "Name": c, "Label": c,
             "Type": t, "Precision": 0, "Scale": 0, "Nullable": "UNKNOWN", "CaseSensitive": True} for c, t in COLUMNS]
    athena_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].query_results_queue.append(QueryResults(as_rows, info))


@pytest.fixture
def athena(monkeypatch):
    for key, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="athena-results")
        yield boto3.client("athena")


def test_athena_backend_sends_a_pruned_query_and_returns_s3_urls(athena):
    t0 = datetime(2011, 2, 15, tzinfo=UTC)
    frames = [[f"id{k}", f"s3://raw/aia/193_{k}.fits", 1, (t0 + timedelta(minutes=4 * k)).strftime("%Y-%m-%d %H:%M:%S.000"),
               2.9, 193.0, "SDO/AIA", "AIA_2", 4096, 4096, "sdo-aia", "193a", "2026-11-21 00:00:00.000"] for k in (2, 0, 1)]
    _athena_answers(frames)
    index = open_index("athena://skysift?workgroup=primary&output=s3://athena-results/q/")

    series = require_series(index, SeriesQuery(t0, t0 + timedelta(hours=26), 193.0, instrument="AIA"))

    assert list(series.uri) == ["s3://raw/aia/193_0.fits", "s3://raw/aia/193_1.fits", "s3://raw/aia/193_2.fits"]
    assert str(series.obs_time.dt.tz) == "UTC" and list(series.hdu) == [1, 1, 1]
    (query_id,) = athena.list_query_executions()["QueryExecutionIds"]
    execution = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
    assert execution["QueryExecutionContext"]["Database"] == "skysift" and execution["WorkGroup"] == "primary"
    sql = execution["Query"]
    assert "FROM images WHERE" in sql and "obs_night BETWEEN '2011-02-15' AND '2011-02-16'" in sql
    assert "obs_time <= TIMESTAMP '2011-02-16 02:00:00.000'" in sql
