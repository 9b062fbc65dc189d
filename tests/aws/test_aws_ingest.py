"""IngestImage on the emulated system: each route, duplicates, quarantine, alert filters."""

from __future__ import annotations

import gzip
import io
import json
import re
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest
from astropy.io import fits
from aws_support import sky_file


def only(executions: list[dict]) -> dict:
    assert len(executions) == 1, [e["status"] for e in executions]
    return executions[0]


def test_small_image_upload_is_cataloged_in_glue(emulation, sky):
    uri = emulation.upload(sky, "night-2026-01-01/field-042.fits")

    execution = only(emulation.wait())

    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    output = json.loads(execution["output"])
    assert output["status"] == "ok" and output["route"] == "small"
    sources = emulation.read_table("sources")
    images = emulation.read_table("images")
    assert sources.num_rows == output["n_sources"] > 10
    assert images.num_rows == 1
    row = images.to_pylist()[0]
    assert (row["uri"], row["status"], row["route"]) == (uri, "ok", "small")
    assert (row["survey"], row["band"], row["obs_night"]) == ("test", "r", "2026-01-01")
    assert set(pc.unique(sources["image_id"]).to_pylist()) == {row["image_id"]}


def test_duplicate_event_adds_no_rows_and_sends_no_second_alert(emulation, sky):
    queue = emulation.subscribe_queue("everything")
    emulation.upload(sky, "night-2026-01-01/field-042.fits")
    first = only(emulation.wait())
    sources_once = emulation.read_table("sources").num_rows
    alerts_once = emulation.receive(queue)

    # S3 delivers at least once: the same event again, through EventBridge.
    events = emulation.client("events")
    event = json.loads(first["input"])
    events.put_events(Entries=[{"Source": "aws.s3", "DetailType": event["detail-type"],
                                "Detail": json.dumps(event["detail"]), "Resources": event["resources"]}])
    executions = emulation.wait()

    assert [e["status"] for e in executions] == ["SUCCEEDED", "SUCCEEDED"]
    assert emulation.read_table("sources").num_rows == sources_once
    assert emulation.read_table("images").num_rows == 1
    n_alerts = emulation.read_table("alerts").num_rows
    assert n_alerts >= 1
    assert len(alerts_once) == n_alerts
    assert emulation.receive(queue) == []
    assert emulation.read_table("alerts").num_rows == n_alerts


def test_alerts_reach_only_subscribers_whose_filter_matches(emulation, sky):
    bright = emulation.subscribe_queue("bright", {"kind": ["high_snr"], "snr": [{"numeric": [">=", 250]}]})
    other_survey = emulation.subscribe_queue("other-survey", {"survey": ["ztf"]})
    new_only = emulation.subscribe_queue("new-only", {"kind": ["new_source"]})

    emulation.upload(sky, "night-2026-01-01/field-042.fits")
    assert only(emulation.wait())["status"] == "SUCCEEDED"

    received = emulation.receive(bright)
    alerts = emulation.read_table("alerts").to_pylist()
    assert 1 <= len([a for a in alerts if a["snr"] >= 250]) == len(received) < len(alerts)
    attributes = received[0]["MessageAttributes"]
    assert attributes["kind"]["Value"] == "high_snr" and attributes["survey"]["Value"] == "test"
    body = json.loads(received[0]["Message"])
    assert body["rule"] == "high_snr" and body["snr"] >= 250 and body["cutout_uri"].startswith("s3://")
    assert emulation.receive(other_survey) == []
    assert emulation.receive(new_only) == []


def test_new_source_alert_for_a_transient_in_a_later_image(emulation, tmp_path):
    new_only = emulation.subscribe_queue("new-only", {"kind": ["new_source"]})
    emulation.upload(sky_file(tmp_path / "a.fits", seed=7), "night-2026-01-01/a.fits")
    emulation.wait()
    later = sky_file(tmp_path / "b.fits", seed=7, night="2026-01-02")
    with fits.open(later, mode="update") as hdul:  # a transient appears between the nights, at (150, 50)
        y, x = np.mgrid[-4:5, -4:5]
        hdul[0].data[46:55, 146:155] += (3000 * np.exp(-(x**2 + y**2) / (2 * 1.3**2))).astype(np.float32)
    emulation.upload(later, "night-2026-01-02/b.fits")
    executions = emulation.wait()

    assert [e["status"] for e in executions] == ["SUCCEEDED", "SUCCEEDED"]
    received = [json.loads(m["Message"]) for m in emulation.receive(new_only)]
    assert len(received) == 1
    assert received[0]["rule"] == "new_source"
    assert abs(received[0]["x"] - 150) < 1 and abs(received[0]["y"] - 50) < 1


def test_corrupt_upload_is_quarantined_with_its_reason_and_kept(emulation, sky):
    truncated = sky.read_bytes()[: 2880 + 20000]
    emulation.upload(truncated, "night-2026-01-01/truncated.fits")
    emulation.upload(b"this is not FITS", "night-2026-01-01/notes.fits")
    emulation.upload(gzip.compress(b"SIMPLE  =" + b" " * 200), "night-2026-01-01/broken.fits.gz")

    executions = emulation.wait()

    by_key = {json.loads(e["input"])["detail"]["object"]["key"].rsplit("/", 1)[1]: e for e in executions}
    assert {k: (e["status"], e["error"]) for k, e in by_key.items()} == {
        "truncated.fits": ("FAILED", "truncated"),
        "notes.fits": ("FAILED", "not_fits"),
        "broken.fits.gz": ("FAILED", by_key["broken.fits.gz"]["error"]),
    }
    assert by_key["broken.fits.gz"]["error"] in ("truncated", "not_fits", "no_image_hdu")
    assert "truncated upload?" in by_key["truncated.fits"]["cause"]
    images = {r["uri"].rsplit("/", 1)[1]: r for r in emulation.read_table("images").to_pylist()}
    assert images["truncated.fits"]["status"] == "failed"
    assert images["truncated.fits"]["error_reason"] == "truncated"
    assert images["notes.fits"]["error_reason"] == "not_fits"
    assert emulation.read_table("sources").num_rows == 0
    s3 = emulation.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=emulation.raw_bucket)["Contents"]]
    assert len(keys) == 3  # the raw objects are kept
    prefix = f"quarantine/{images['notes.fits']['image_id']}/"
    [record_key] = [o["Key"] for o in s3.list_objects_v2(Bucket=emulation.catalog_bucket, Prefix=prefix)["Contents"]]
    record = emulation.get_json(f"s3://{emulation.catalog_bucket}/{record_key}")
    assert record["reason"] == "not_fits" and record["uri"].endswith("notes.fits")
    assert (record["state"], record["execution"]) == ("Inspect", record_key.rsplit("/", 1)[1].removesuffix(".json"))


def test_helioprojective_image_is_indexed_not_extracted(emulation, aia_file):
    emulation.upload(Path(aia_file), "sdo/aia/2011-06-07/aia_171.fits")

    execution = only(emulation.wait())

    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    assert json.loads(execution["output"])["route"] == "index_only"
    row = emulation.read_table("images").to_pylist()[0]
    assert (row["status"], row["route"], row["wcs_kind"]) == ("indexed", "index_only", "helioprojective")
    assert row["wavelength_angstrom"] == pytest.approx(171.0)
    assert emulation.read_table("sources").num_rows == 0


def test_only_fits_uploads_to_the_raw_bucket_start_ingestion(emulation, sky):
    emulation.upload(b"a readme", "night-2026-01-01/README.txt")
    emulation.upload(sky, "catalog-copy/field.fits", bucket=emulation.catalog_bucket)
    emulation.upload(sky, "night-2026-01-01/field.fz")

    executions = emulation.wait()

    assert [json.loads(e["input"])["detail"]["object"]["key"] for e in executions] == ["night-2026-01-01/field.fz"]


@pytest.fixture
def large_emulation():
    """The system with a pixel budget so small that every celestial image takes the Batch route."""
    from aws_support import PARAMETERS, ROOT

    from skysift.aws.emulation.emulate import Emulation

    with Emulation(ROOT, parameters={**PARAMETERS, "SmallImageMaxPixels": 10_000}) as aws:
        yield aws


def test_large_image_runs_as_a_batch_job_with_the_same_results(large_emulation, sky):
    large_emulation.upload(sky, "night-2026-01-01/field-042.fits")

    execution = only(large_emulation.wait())

    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    output = json.loads(execution["output"])
    assert output["route"] == "large" and output["status"] == "ok"
    jobs = large_emulation.client("batch").list_jobs(
        jobQueue=large_emulation.names["LargeJobQueue"], jobStatus="SUCCEEDED")["jobSummaryList"]
    assert len(jobs) == 1
    job = large_emulation.client("batch").describe_jobs(jobs=[jobs[0]["jobId"]])["jobs"][0]
    assert job["container"]["command"][:3] == ["batch", "--bucket", large_emulation.raw_bucket]
    assert large_emulation.read_table("sources").num_rows == output["n_sources"] > 10
    row = large_emulation.read_table("images").to_pylist()[0]
    assert (row["status"], row["route"]) == ("ok", "large")


def test_bad_large_image_fails_its_batch_job_and_is_quarantined_with_the_reason(large_emulation, sky):
    # The header reads fine and the file is whole (Inspect routes it to Batch); only the
    # pixels show it is unusable: every one is NaN. (A cut-off upload is caught by Inspect's
    # header check now, before any job starts: see test_hostile_corpus.)
    with fits.open(sky) as hdul:
        hdul[0].data[:] = np.nan
        blank = io.BytesIO()
        hdul.writeto(blank)
    large_emulation.upload(blank.getvalue(), "night-2026-01-01/all-nan.fits")

    execution = only(large_emulation.wait())

    assert (execution["status"], execution.get("error")) == ("FAILED", "all_nan")
    jobs = large_emulation.client("batch").list_jobs(
        jobQueue=large_emulation.names["LargeJobQueue"], jobStatus="FAILED")["jobSummaryList"]
    assert len(jobs) == 1
    row = large_emulation.read_table("images").to_pylist()[0]
    assert (row["status"], row["route"], row["error_reason"]) == ("failed", "large", "all_nan")


def test_throttled_functions_are_retried_and_the_image_still_goes_through(emulation, sky):
    emulation.throttle("DetectFunction", times=2)
    emulation.throttle("AlertsFunction", times=1)
    emulation.upload(sky, "night-2026-01-01/field-042.fits")

    execution = only(emulation.wait())

    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    history = emulation.client("stepfunctions").get_execution_history(
        executionArn=execution["executionArn"], maxResults=1000)["events"]
    failures = [e["taskFailedEventDetails"]["error"] for e in history if e["type"] == "TaskFailed"]
    assert failures == ["Lambda.TooManyRequestsException"] * 3
    assert emulation.read_table("images").to_pylist()[0]["status"] == "ok"


def test_emulated_definitions_differ_from_the_files_only_in_retry_intervals(emulation):
    for name in ("IngestImageStateMachine", "SurveyIngestStateMachine"):
        emulation.fast_retries = False
        deployed = emulation.definition(name)
        emulation.fast_retries = True
        emulated = emulation.definition(name)
        text = json.dumps(deployed)
        assert "${" not in text
        assert emulated == json.loads(re.sub(r'"IntervalSeconds": \d+', '"IntervalSeconds": 1',
                                             re.sub(r'"BackoffRate": [\d.]+', '"BackoffRate": 1.0', text)))


def test_url_encoded_keys_in_events_find_their_object(emulation, sky):
    emulation.client("events").disable_rule(Name="IngestImageStateMachineFitsUploaded")
    emulation.upload(sky, "night 1/field+a (1).fits")
    emulation.client("events").enable_rule(Name="IngestImageStateMachineFitsUploaded")
    detail = {"version": "0", "bucket": {"name": emulation.raw_bucket},
              "object": {"key": "night+1/field%2Ba+%281%29.fits", "size": 1, "etag": "x"},
              "request-id": "R", "requester": "123456789012", "reason": "PutObject"}
    emulation.client("events").put_events(Entries=[{"Source": "aws.s3", "DetailType": "Object Created",
                                                     "Detail": json.dumps(detail)}])

    execution = only(emulation.wait())

    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    assert emulation.read_table("images").to_pylist()[0]["uri"].endswith("/night 1/field+a (1).fits")


def _pattern_matches(pattern: dict, event: dict) -> bool:
    """EventBridge matching of an event by a pattern (exact values, prefix and suffix: what S3
    upload rules use; any other operator fails the test rather than being guessed at)."""
    for name, rule in pattern.items():
        value = event.get(name)
        if isinstance(rule, dict):
            if not isinstance(value, dict) or not _pattern_matches(rule, value):
                return False
            continue
        if not any(_value_matches(choice, value) for choice in rule):
            return False
    return True


def _value_matches(choice, value) -> bool:
    if not isinstance(choice, dict):
        return choice == value
    [(operator, argument)] = choice.items()
    if operator == "prefix":
        return isinstance(value, str) and value.startswith(argument)
    if operator == "suffix":
        if isinstance(argument, dict):  # {"suffix": {"equals-ignore-case": ".fits"}}
            [(mode, text)] = argument.items()
            assert mode == "equals-ignore-case", f"suffix mode {mode!r}: teach this test what it means"
            return isinstance(value, str) and value.lower().endswith(text.lower())
        return isinstance(value, str) and value.endswith(argument)
    raise AssertionError(f"pattern operator {operator!r}: teach this test what it means")


def test_nothing_the_system_writes_starts_an_ingestion(emulation, sky, tmp_path):
    """No recursion: after an ingestion with alerts (FITS cut-outs), a quarantine and a survey
    report, no object the system wrote, in any bucket, matches an upload trigger rule."""
    uploads = {emulation.upload(sky, "night-2026-01-01/field-042.fits"),
               emulation.upload(b"not FITS at all", "night-2026-01-01/notes.fits")}
    emulation.wait()
    emulation.start_survey(prefix="night-2026-01-01/")
    emulation.wait()

    s3, events = emulation.client("s3"), emulation.client("events")
    patterns = [json.loads(rule["EventPattern"]) for rule in events.list_rules()["Rules"] if "EventPattern" in rule]
    assert patterns
    written = [(bucket["Name"], obj["Key"]) for bucket in s3.list_buckets()["Buckets"]
               for obj in s3.list_objects_v2(Bucket=bucket["Name"]).get("Contents", [])
               if f"s3://{bucket['Name']}/{obj['Key']}" not in uploads]
    keys = [key for _, key in written]
    for prefix in ("quarantine/", "cutouts/", "reports/", "runs/", "images/", "sources/"):
        assert any(k.startswith(prefix) for k in keys), prefix  # the outputs of every kind were written
    assert any(k.endswith(".fits") for k in keys)  # cut-outs are FITS files: the suffix filter alone would not do
    for bucket, key in written:
        event = {"source": "aws.s3", "detail-type": "Object Created",
                 "detail": {"bucket": {"name": bucket}, "object": {"key": key}}}
        assert not any(_pattern_matches(p, event) for p in patterns), f"s3://{bucket}/{key} would start an ingestion"
    started_by_uploads = [e for e in emulation.executions() if json.loads(e["input"]).get("source") == "aws.s3"]
    assert len(started_by_uploads) == 2
