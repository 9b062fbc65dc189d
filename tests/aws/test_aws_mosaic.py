"""A multi-extension file on the emulated AWS system: each image HDU (a mosaic's CCD) is its own image,
as ``skysift run`` measures it (tests/test_multi_extension.py): IngestImage's Map runs Inspect, Detect,
Alerts and Record once per CCD; a damaged CCD is quarantined alone and fails the execution with its reason.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import pytest
from astropy.io import fits

from skysift.io.fits import make_image_id
from test_multi_extension import write_mosaic


def _mosaic(tmp_path: Path) -> Path:
    return write_mosaic(tmp_path / "mosaic.fits")


def _etag(emulation, key: str) -> str:
    head = emulation.client("s3").head_object(Bucket=emulation.raw_bucket, Key=key)
    return "etag:" + head["ETag"].strip('"')


@pytest.mark.slow
def test_a_three_ccd_mosaic_gives_three_images_each_with_its_own_id_and_sources(emulation, tmp_path):
    key = "night-2026-03-01/mosaic.fits"
    uri = emulation.upload(_mosaic(tmp_path), key)

    [execution] = emulation.wait()

    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    output = json.loads(execution["output"])
    assert [o["status"] for o in output["images"]] == ["ok", "ok", "ok"] and output["any_failed"] is False
    first_id = make_image_id(uri, _etag(emulation, key))  # the first CCD's id is the file version's
    assert output["image_id"] == output["images"][0]["image_id"] == first_id
    images = sorted(emulation.read_table("images").to_pylist(), key=lambda r: r["hdu"])
    assert [(r["hdu"], r["hdu_name"], r["status"], r["uri"]) for r in images] == [
        (1, "CCD1", "ok", uri), (2, "CCD2", "ok", uri), (3, "CCD3", "ok", uri)]
    assert [r["image_id"] for r in images] == [make_image_id(uri, _etag(emulation, key), h) for h in (None, 2, 3)]
    assert {o["image_id"]: o["n_sources"] for o in output["images"]} == {r["image_id"]: r["n_sources"] for r in images}
    per_image = Counter(emulation.read_table("sources").column("image_id").to_pylist())
    assert per_image == {r["image_id"]: r["n_sources"] for r in images}
    assert all(r["n_sources"] > 10 for r in images)
    assert len({round(r["center_ra"], 3) for r in images}) == 3  # each CCD on its own patch of sky


@pytest.mark.slow
def test_a_mosaic_with_a_damaged_ccd_records_the_others_and_fails_with_its_reason(emulation, tmp_path):
    with fits.open(_mosaic(tmp_path)) as hdul:
        hdul.pop()  # the table, so that CCD3's data is the end of the file
        buffer = io.BytesIO()
        hdul.writeto(buffer)
    key = "night-2026-03-01/damaged.fits"
    uri = emulation.upload(buffer.getvalue()[:-2880 * 5], key)  # CCD3's data cut short: a truncated upload

    [execution] = emulation.wait()

    assert (execution["status"], execution["error"]) == ("FAILED", "truncated")
    images = {r["hdu"]: r for r in emulation.read_table("images").to_pylist()}
    failed_id = make_image_id(uri, _etag(emulation, key), 3)  # CCD3's own id, as skysift run gives it
    statuses = sorted((r["status"], r["error_reason"], r["image_id"]) for r in images.values())
    assert [s[:2] for s in statuses] == [("failed", "truncated"), ("ok", None), ("ok", None)]
    assert failed_id in {s[2] for s in statuses} and len({s[2] for s in statuses}) == 3
    failed = next(r for r in images.values() if r["status"] == "failed")
    assert failed["error_message"] and failed["error_message"] in execution["cause"]
    per_image = Counter(emulation.read_table("sources").column("image_id").to_pylist())
    assert per_image == {r["image_id"]: r["n_sources"] for r in images.values() if r["status"] == "ok"}
    s3 = emulation.client("s3")
    [record_key] = [o["Key"] for o in s3.list_objects_v2(Bucket=emulation.catalog_bucket,
                                                          Prefix=f"quarantine/{failed_id}/")["Contents"]]
    record = emulation.get_json(f"s3://{emulation.catalog_bucket}/{record_key}")
    assert record["reason"] == "truncated" and record["uri"] == uri
