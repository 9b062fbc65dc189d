"""Alert packets (Avro, schema skysift.alert.v1) from a survey run as a user runs it.

`skysift sample` (two nights of four pointings), `skysift run`, `skysift crossmatch` against
a reference made from the sample's truth, then a third night of the first pointing and
`skysift run` again: its alerts are of stars seen on all three nights.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import fastavro
import fastavro.validation
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.io import fits
from astropy.nddata import Cutout2D
from astropy.wcs import WCS

from skysift.alerts.log import LogPublisher
from skysift.alerts.packets import (
    SCHEMA_NAME,
    alert_schema,
    build_packets,
    read_packet,
    schema_text,
    serialize,
)
from skysift.catalog.query import LocalCatalog
from skysift.catalog.records import ImageRecord, ImageStatus, Route, WcsStatus

SKYSIFT = [sys.executable, "-m", "skysift.cli.main"]
ALERT_OPTIONS = ["--min-snr-alert", "200", "-j", "2"]
NIGHT_3 = "2026-03-28T03:05:00"


def _skysift(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*SKYSIFT, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def _ok(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _reference_from_truth(truth: Path, out: Path) -> None:
    """One row per star of the sample's truth (listed once per image it falls on)."""
    table = pq.read_table(truth).to_pandas()
    stars = table[table["kind"] == "star"].assign(key=lambda t: (t["ra"].round(6).astype(str) + t["dec"].round(6).astype(str)))
    stars = stars.drop_duplicates("key").reset_index(drop=True)
    pq.write_table(pa.table({"ref_id": [f"star-{i}" for i in range(len(stars))], "ra": stars["ra"], "dec": stars["dec"],
                             "mag": stars["mag"]}), out)


@pytest.fixture(scope="module")
def survey(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("packets")
    _ok(_skysift("sample", "sky", "--size", "384", cwd=root))
    _ok(_skysift("--home", "home", "run", "sky", *ALERT_OPTIONS, cwd=root))
    _reference_from_truth(root / "sky" / "truth.parquet", root / "ref.parquet")
    _ok(_skysift("--home", "home", "crossmatch", "--reference", "ref.parquet", cwd=root))
    (root / "night3").mkdir()
    shutil.copy(root / "sky" / "field_001.fits", root / "night3" / "field_009.fits")
    with fits.open(root / "night3" / "field_009.fits", mode="update") as hdul:  # pointing 1 again, a week later
        hdul[0].header["DATE-OBS"] = NIGHT_3
    _ok(_skysift("--home", "home", "run", "night3", *ALERT_OPTIONS, cwd=root))
    return root


def _image_ids(root: Path) -> dict[str, str]:
    """File name -> image_id."""
    rows = LocalCatalog(root / "home").arrow("SELECT image_id, uri FROM images").to_pylist()
    return {Path(r["uri"]).name: r["image_id"] for r in rows}


def _packets(root: Path) -> dict[str, dict]:
    return {path.stem: read_packet(path) for path in sorted((root / "home" / "packets").glob("*.avro"))}


def test_every_alert_has_a_packet_that_validates_and_round_trips(survey):
    alerts = LogPublisher(survey / "home").read()
    packets = _packets(survey)
    assert len(alerts) == len(packets) > 10
    schema = alert_schema()
    assert json.loads(schema_text())["namespace"] == "skysift.alert.v1"
    for alert in alerts:
        path = Path(alert["packet_uri"])
        path = path if path.is_absolute() else survey / path
        data = path.read_bytes()
        with io.BytesIO(data) as stream:
            reader = fastavro.reader(stream)
            assert reader.writer_schema["name"] == SCHEMA_NAME
            (record,) = list(reader)
        assert fastavro.validation.validate(record, schema, raise_errors=True)
        assert serialize(record) == data  # read back and written again: the same bytes
        assert record["alert_id"] == alert["alert_id"] and record["rule"] == alert["rule"]
        assert record["candidate"]["source_id"] == alert["source_id"]
        assert alert["object_id"] == record["object"]["object_id"]
        assert alert["sky_cell"] == record["candidate"]["sky_cell"] == record["candidate"]["healpix"] >> 20
        assert record["cutout_science"]["stamp_data"] == (survey / alert["cutout_uri"]).read_bytes()


def test_a_star_seen_on_three_nights_carries_its_two_earlier_detections(survey):
    ids = _image_ids(survey)
    night3 = [p for p in _packets(survey).values() if p["candidate"]["image_id"] == ids["field_009.fits"]]
    assert len(night3) >= 3
    objects = LocalCatalog(survey / "home").arrow("SELECT object_id, n_det, source_ids FROM objects").to_pylist()
    by_id = {o["object_id"]: o for o in objects}
    for packet in night3:
        candidate, obj, prv = packet["candidate"], packet["object"], packet["prv_detections"]
        assert [d["image_id"] for d in prv] == [ids["field_001.fits"], ids["field_005.fits"]]  # oldest first
        assert all(d["in_object"] and d["separation_arcsec"] < 0.5 for d in prv)
        assert [d["obs_time"].date().isoformat() for d in prv] == ["2026-03-14", "2026-03-21"]
        assert all(abs(d["mag_ab"] - candidate["mag_ab"]) < 0.1 for d in prv)
        assert packet["prv_nondetections"] == []
        assert obj["n_det"] == 3 and obj["n_images"] == 3
        assert obj["first_seen"] == datetime(2026, 3, 14, 3, 5, tzinfo=UTC)
        assert obj["last_seen"] == datetime.fromisoformat(NIGHT_3).replace(tzinfo=UTC)
        assert set(obj["source_ids"]) == {candidate["source_id"], *(d["source_id"] for d in prv)}
        # the objects table, updated at the end of the run, has the same object under the same id
        assert by_id[obj["object_id"]]["n_det"] == 3
        assert candidate["source_id"] in by_id[obj["object_id"]]["source_ids"]
    first_night = [p for p in _packets(survey).values() if p["candidate"]["obs_night"] == "2026-03-14"]
    assert first_night and all(p["prv_detections"] == [] and p["cutout_reference"] is None for p in first_night)


def _stamp(data: bytes) -> tuple[np.ndarray, fits.Header]:
    with fits.open(io.BytesIO(data)) as hdul:
        return hdul[0].data.copy(), hdul[0].header.copy()


def test_the_reference_stamp_is_the_same_sky_in_the_earliest_earlier_image(survey):
    ids = _image_ids(survey)
    night3 = [p for p in _packets(survey).values() if p["candidate"]["image_id"] == ids["field_009.fits"]]
    with fits.open(survey / "sky" / "field_001.fits") as hdul:
        earliest, wcs = hdul[0].data.astype(np.float32), WCS(hdul[0].header)
    for packet in night3:
        reference, candidate = packet["cutout_reference"], packet["candidate"]
        assert reference["image_id"] == ids["field_001.fits"]  # not field_005, the night in between
        assert reference["obs_time"] == datetime(2026, 3, 14, 3, 5, tzinfo=UTC)
        x, y = wcs.all_world2pix(candidate["ra"], candidate["dec"], 0)  # independent of skysift
        assert abs(reference["x"] - x) < 0.01 and abs(reference["y"] - y) < 0.01
        stamp, header = _stamp(reference["stamp_data"])
        expected = Cutout2D(earliest, (float(x), float(y)), reference["size_px"], mode="partial", fill_value=np.nan).data
        np.testing.assert_array_equal(stamp, expected)
        centre = WCS(header).all_pix2world([[(stamp.shape[1] - 1) / 2, (stamp.shape[0] - 1) / 2]], 0)[0]
        assert np.hypot((centre[0] - candidate["ra"]) * np.cos(np.deg2rad(candidate["dec"])),
                        centre[1] - candidate["dec"]) * 3600 < 0.6  # within a pixel (0.4") plus rounding


def test_a_new_source_has_upper_limits_and_an_empty_reference_stamp(survey):
    ids = _image_ids(survey)
    (packet,) = [p for p in _packets(survey).values() if p["rule"] == "new_source"]
    assert packet["candidate"]["image_id"] == ids["field_005.fits"]
    assert packet["prv_detections"] == [] and packet["object"]["n_det"] == 1
    (limit,) = packet["prv_nondetections"]
    assert limit["image_id"] == packet["cutout_reference"]["image_id"] == ids["field_001.fits"]
    assert limit["limit_mag_5sigma"] > packet["candidate"]["mag_ab"] + 1
    science, _ = _stamp(packet["cutout_science"]["stamp_data"])
    reference, _ = _stamp(packet["cutout_reference"]["stamp_data"])
    centre = (slice(13, 19), slice(13, 19))  # 6 x 6 pixels around the position

    def excess(stamp: np.ndarray) -> float:  # mean over the centre above the stamp's sky
        return float(np.nanmean(stamp[centre]) - np.nanmedian(stamp))

    assert excess(science) > 50 and abs(excess(reference)) < 0.1 * excess(science)


def test_crossmatch_context_comes_from_the_matches_table_once_there_is_one(survey):
    ids = _image_ids(survey)
    packets = list(_packets(survey).values())
    later = [p for p in packets if p["candidate"]["image_id"] == ids["field_009.fits"]]
    before = [p for p in packets if p["candidate"]["image_id"] != ids["field_009.fits"]]
    assert all(p["crossmatch"] is None for p in before)  # raised before `skysift crossmatch` ran
    for packet in later:
        (match,) = packet["crossmatch"]
        assert match["reference"] == "ref" and match["ref_id"].startswith("star-")
        assert match["separation_arcsec"] < 0.5
        assert match["matched_source_id"] in packet["object"]["source_ids"]


def test_alerts_export_writes_each_packet_as_avro_or_json_and_rebuilds_from_the_tables(survey):
    alerts = LogPublisher(survey / "home").read()
    done = _ok(_skysift("--home", "home", "alerts", "export", "-o", "out-avro", cwd=survey))
    assert f"wrote {len(alerts)} packet(s)" in done.stdout
    for alert in alerts:
        exported = (survey / "out-avro" / f"{alert['alert_id']}.avro").read_bytes()
        assert exported == (survey / "home" / "packets" / f"{alert['alert_id']}.avro").read_bytes()

    _ok(_skysift("--home", "home", "alerts", "export", "--format", "json", "-o", "out-json", cwd=survey))
    files = sorted((survey / "out-json").glob("*.json"))
    assert len(files) == len(alerts)
    document = json.loads(files[0].read_text())
    stored = read_packet(survey / "home" / "packets" / f"{files[0].stem}.avro")
    assert document["candidate"]["source_id"] == stored["candidate"]["source_id"]
    assert datetime.fromisoformat(document["created_at"]) == stored["created_at"]
    stamp, _ = _stamp(base64.b64decode(document["cutout_science"]["stamp_data"]))
    assert stamp.shape == (32, 32)

    done = _ok(_skysift("--home", "home", "alerts", "export", "--rebuild", "--rule", "high_snr", "-o", "out-rebuilt",
                        cwd=survey))
    rebuilt = {p.stem: read_packet(p) for p in (survey / "out-rebuilt").glob("*.avro")}
    assert len(rebuilt) == sum(a["rule"] == "high_snr" for a in alerts) and "built from the tables" in done.stdout
    for alert_id, packet in rebuilt.items():
        stored = read_packet(survey / "home" / "packets" / f"{alert_id}.avro")
        assert packet["candidate"] == stored["candidate"] and packet["object"] == stored["object"]
        assert packet["prv_detections"] == stored["prv_detections"]
        assert packet["crossmatch"] is not None  # the matches table is there now
    assert any(packet["crossmatch"] for packet in rebuilt.values())


class _NoHistory:
    """A store that must not be asked: a candidate without a sky position has no history."""

    def __getattr__(self, name):
        raise AssertionError(f"asked the store for {name}")


def test_a_candidate_without_a_trusted_wcs_gets_a_packet_without_object_or_history():
    sources = pa.table({"source_id": ["img:0"], "image_id": ["img"], "x": [10.5], "y": [20.25],
                        "ra": pa.array([None], pa.float64()), "dec": pa.array([None], pa.float64()),
                        "flux": [1e5], "snr": pa.array([500.0], pa.float32()), "flags": pa.array([0], pa.int32()),
                        "healpix": pa.array([None], pa.int64())})
    alert = {"alert_id": "a0", "rule": "high_snr", "source_id": "img:0", "x": 10.5, "y": 20.25, "detail": "SNR 500",
             "created_at": datetime(2026, 1, 1, tzinfo=UTC)}
    image = ImageRecord(image_id="img", uri="img.fits", wcs_status=WcsStatus.INVALID, status=ImageStatus.OK,
                        route=Route.LOCAL)
    (packet,) = build_packets(image, [alert], sources, _NoHistory(), [None])
    assert packet["object"] is None and packet["prv_detections"] == [] and packet["crossmatch"] is None
    assert packet["candidate"]["sky_cell"] is None and packet["cutout_science"] is None
    assert read_packet(serialize(packet)) == packet
