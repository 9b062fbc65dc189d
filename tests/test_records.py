"""The typed ``images`` row: its fields are the schema's columns, and it survives Arrow and JSON."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from skysift.catalog.records import (
    ChecksumStatus,
    ImageRecord,
    ImageStatus,
    Route,
    WcsKind,
    WcsStatus,
    schema_mismatches,
)
from skysift.catalog.schema import IMAGES_SCHEMA, PARTITION_KEYS
from skysift.catalog.tables import LocalTables


def _record(**changes) -> ImageRecord:
    values = dict(
        image_id="abc", uri="/data/a.fits", content_hash="sha256:00", hdu=0, hdu_name="PRIMARY", nx=64, ny=32,
        bytes=11520, bitpix=-32, compressed=False, wcs_kind="celestial", checksum_status="ok",
        obs_time=datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC), status="ok", route="local", n_sources=7,
        background_rms=4.5, center_ra=150.0, center_dec=2.2, radius_deg=0.01,
        corners_ra=[149.99, 150.01, 150.01, 149.99], corners_dec=[2.19, 2.19, 2.21, 2.21], wcs_status="valid",
        crowded=False, aperture_radii_px=[2.0, 4.0, 8.0], processed_at=datetime(2026, 1, 3, tzinfo=UTC),
        survey="test", band="r", obs_night="2026-01-02",
    )
    return ImageRecord(**(values | changes))


def test_the_record_fields_are_the_images_columns_then_the_partition_keys():
    assert list(ImageRecord.model_fields) == [*IMAGES_SCHEMA.names, *PARTITION_KEYS]
    assert schema_mismatches() == []


def test_a_record_that_drifts_from_the_schema_is_caught():
    drifted = IMAGES_SCHEMA.set(IMAGES_SCHEMA.get_field_index("nx"), pa.field("nx", pa.float64()))
    assert schema_mismatches(schema=drifted) == ["nx: int for an Arrow double"]
    grown = IMAGES_SCHEMA.append(pa.field("airmass", pa.float64()))
    assert schema_mismatches(schema=grown)[0].startswith("fields ")


def test_enums_are_their_strings():
    record = _record()
    assert (record.status, record.route, record.wcs_kind, record.wcs_status, record.checksum_status) == (
        ImageStatus.OK, Route.LOCAL, WcsKind.CELESTIAL, WcsStatus.VALID, ChecksumStatus.OK)
    assert record.status == "ok" and record.route == "local" and f"{record.wcs_status}" == "valid"
    row = record.to_row()
    assert type(row["status"]) is str and type(row["wcs_kind"]) is str
    assert ImageStatus.INDEXED.succeeded and not ImageStatus.FAILED.succeeded
    assert Route.SMALL.in_memory and not Route.LARGE.in_memory and not Route.INDEX_ONLY.in_memory


def test_values_outside_the_columns_are_refused_when_made_and_ignored_when_read():
    with pytest.raises(ValidationError):
        _record(status="done")
    with pytest.raises(ValidationError):
        _record(route="lambda")
    with pytest.raises(ValidationError):
        _record(n_tiles=4)  # not a column
    assert ImageRecord.from_row(_record().to_row() | {"n_tiles": 4}) == _record()
    with pytest.raises(ValidationError):
        _record().replace(nx="wide")
    assert _record().replace(nx=128).nx == 128


def test_a_record_survives_parquet_and_the_one_reader(tmp_path):
    record = _record()
    store = LocalTables(tmp_path / "home")
    store.write_image(record, None)
    [back] = store.images()
    assert back == record
    assert store.image("abc") == back and store.image("nope") is None and store.images("abc") == [back]
    table = pq.read_table(next((tmp_path / "home" / "tables" / "images").rglob("*.parquet")))
    assert table.schema.equals(IMAGES_SCHEMA) and table.num_rows == 1


def test_a_record_survives_json_nan_and_times_included():
    record = _record()
    document = json.loads(json.dumps(record.to_json()))
    assert document["obs_time"] == "2026-01-02T03:04:05.600000+00:00" and document["status"] == "ok"
    back = ImageRecord.from_json(document)
    assert back == record and back.obs_time.utcoffset().total_seconds() == 0
    unmeasured = ImageRecord.from_json(json.loads(json.dumps(record.replace(background_rms=float("nan")).to_json())))
    assert math.isnan(unmeasured.background_rms)  # as json.dumps writes it, not turned into null


def test_a_damaged_images_file_is_named(tmp_path):
    store = LocalTables(tmp_path / "home")
    store.write_image(_record(), None)
    path = next((tmp_path / "home" / "tables" / "images").rglob("*.parquet"))
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(Exception, match="damaged") as caught:
        store.images()
    assert caught.value.reason == "damaged_table" and path.name in str(caught.value)
