"""TimeLagAnalysis on the emulated system: the real ASL, the Batch job run by the time-lag worker entrypoint."""

from __future__ import annotations

import io
import json
import sys
from datetime import timedelta

import pytest
from astropy.io import fits
from aws_support import ROOT

sys.path.insert(0, str(ROOT / "tests" / "timelag"))
from solar_series import lag_request, make_lag_series

ASL = json.loads((ROOT / "statemachine/timelag.asl.json").read_text())


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """A small two-channel AIA-like series (12 frames of 48x48 px per channel), indexed locally."""
    return make_lag_series(tmp_path_factory.mktemp("aws-timelag"), n_frames=12, shape=(48, 48), seed=11)


def _request(series, **overrides) -> dict:
    request = lag_request(series, ROOT / "unused.fits", scheduler="threads", **overrides)
    del request["output"]  # the state machine places it under timelag/{execution name}/
    return request


def _history(emulation, execution_arn: str) -> list[dict]:
    return emulation.client("stepfunctions").get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]


def test_timelag_request_runs_on_batch_and_writes_the_lag_map(emulation, series):
    arn = emulation.start_timelag(_request(series), name="ar-test-1")
    emulation.wait(timeout_s=120)

    execution = emulation.client("stepfunctions").describe_execution(executionArn=arn)
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    result = json.loads(execution["output"])
    bucket = emulation.catalog_bucket
    assert result["output"] == f"s3://{bucket}/timelag/ar-test-1/lag.fits"
    assert result["png"] == f"s3://{bucket}/timelag/ar-test-1/lag.png"
    summary = result["summary"]
    assert summary["status"] == "ok" and summary["frames"] == [12, 12]
    assert summary["request"] == f"s3://{bucket}/timelag-requests/ar-test-1.json"
    assert emulation.timelag_jobs == [[summary["request"]]]  # Ref::request became the worker's argument

    s3 = emulation.client("s3")
    stored_request = json.loads(s3.get_object(Bucket=bucket, Key="timelag-requests/ar-test-1.json")["Body"].read())
    assert stored_request["output"] == result["output"] and stored_request["channel_a"] == 193
    lag = fits.getdata(io.BytesIO(s3.get_object(Bucket=bucket, Key="timelag/ar-test-1/lag.fits")["Body"].read()))
    assert lag.shape == (40, 40)
    png = s3.get_object(Bucket=bucket, Key="timelag/ar-test-1/lag.png")["Body"].read()
    assert png.startswith(b"\x89PNG")
    assert emulation.get_json(f"s3://{bucket}/timelag/ar-test-1/lag.fits.json") == summary
    assert not s3.list_objects_v2(Bucket=emulation.raw_bucket).get("Contents")  # nothing where ingestion triggers
    assert emulation.executions() == []  # so no IngestImage ran


def test_request_without_frames_fails_permanently_without_retries(emulation, series):
    later = {"start": (series.start + timedelta(days=365)).isoformat(), "end": (series.end + timedelta(days=365)).isoformat()}
    arn = emulation.start_timelag(_request(series, **later), name="empty-range")
    emulation.wait(timeout_s=60)

    execution = emulation.client("stepfunctions").describe_execution(executionArn=arn)
    assert execution["status"] == "FAILED"
    assert execution["error"] == "TimeLagFailed"
    assert execution["cause"].startswith("the time-lag job exited 2: series_not_found: 0 frame(s)")  # the worker's permanent failure, in one line
    assert len(emulation.timelag_jobs) == 1  # one job, no retry loop
    submitted = [e for e in _history(emulation, arn) if e["type"] == "TaskSubmitted"]
    assert len(submitted) == 1
    listed = emulation.client("s3").list_objects_v2(Bucket=emulation.catalog_bucket, Prefix="timelag/").get("Contents", [])
    assert listed == []  # no lag map, no summary


def test_timelag_tasks_have_timeouts_retry_throttling_and_catch_to_fail_keeping_the_input():
    tasks = {name: state for name, state in ASL["States"].items() if state["Type"] == "Task"}
    assert set(tasks) == {"WriteRequest", "RunWorker", "ReadSummary", "ReadJobClaim", "Discard"}
    for name, task in tasks.items():
        assert task["TimeoutSeconds"] > 0, name
        retried = {e for r in task["Retry"] for e in r["ErrorEquals"]}
        assert "States.TaskFailed" not in retried and "States.ALL" not in retried, name
        [catch] = task["Catch"]
        assert catch["ErrorEquals"] == ["States.ALL"], name
    # the error that failed the execution stays at $.error; the failure path's own errors go elsewhere
    assert {name: tasks[name]["Catch"][0]["ResultPath"] for name in tasks} == {
        "WriteRequest": "$.error", "RunWorker": "$.error", "ReadSummary": "$.error",
        "ReadJobClaim": "$.claim_error", "Discard": "$.discard_error"}
    # nothing was written under timelag/ before the job: straight to Failed; after it, through Discard
    assert tasks["WriteRequest"]["Catch"][0]["Next"] == "Failed"
    assert tasks["RunWorker"]["Catch"][0]["Next"] == "ReadJobClaim"
    assert tasks["ReadSummary"]["Catch"][0]["Next"] == tasks["ReadJobClaim"]["Catch"][0]["Next"] == "Discard"
    assert tasks["Discard"]["Next"] == tasks["Discard"]["Catch"][0]["Next"] == "Failed"
    run = tasks["RunWorker"]
    assert run["Resource"].endswith(":batch:submitJob.sync")
    assert {"Batch.TooManyRequestsException", "Batch.ServerException"} <= {e for r in run["Retry"] for e in r["ErrorEquals"]}
    assert run["Parameters"]["Parameters"] == {"request.$": "$.request_uri"}
    assert ASL["States"]["Failed"]["Type"] == "Fail"
    placement = ASL["States"]["Prepare"]["Parameters"]["placement"]
    assert all("s3://${CatalogBucketName}/timelag/{}/" in v for v in placement.values())
    discarded = [o["Key.$"] for o in tasks["Discard"]["Parameters"]["Delete"]["Objects"]]
    prepared = ASL["States"]["Prepare"]["Parameters"]
    keys = {**{f"$.result_keys.{k.removesuffix('.$')}": v for k, v in prepared["result_keys"].items()},
            "$.summary_key": prepared["summary_key.$"]}
    assert sorted(keys[k] for k in discarded) == sorted(
        f"States.Format('timelag/{{}}/{name}', $$.Execution.Name)" for name in ("lag.fits", "lag.png", "lag.fits.json"))


def test_timelag_job_definition_retries_only_transient_exits():
    from skysift.aws.template import load_template

    spec = load_template(ROOT / "template.yaml")["Resources"]["TimeLagJobDefinition"]["Properties"]
    assert spec["ContainerProperties"]["Command"] == ["python", "-m", "skysift.aws.timelag_job", "Ref::request"]
    rules = spec["RetryStrategy"]["EvaluateOnExit"]
    assert {"OnExitCode": "2", "Action": "EXIT"} in rules and {"OnExitCode": "75", "Action": "RETRY"} in rules
    assert rules.index({"OnExitCode": "2", "Action": "EXIT"}) < rules.index({"OnReason": "*", "Action": "EXIT"})
    assert spec["Timeout"]["AttemptDurationSeconds"] <= 3600
