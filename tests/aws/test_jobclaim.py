"""One Batch job's work per image per execution (skysift.aws.jobclaim), on moto's S3 (conditional puts)."""

from __future__ import annotations

import json
import threading
import time

import boto3
import pytest
from aws_support import ROOT
from moto import mock_aws

from skysift.aws.jobclaim import JOB_ATTEMPT_TIMEOUT_S, Claim, claim_uri, run_once

BUCKET = "catalog"
URI = claim_uri(f"s3://{BUCKET}/runs/img1/summary.json", "exec-1")


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def claim(s3) -> dict:
    return json.loads(s3.get_object(Bucket=BUCKET, Key=URI.split("/", 3)[3])["Body"].read())


def plant(s3, **fields) -> None:
    s3.put_object(Bucket=BUCKET, Key=URI.split("/", 3)[3], Body=json.dumps(fields).encode())


def test_the_claim_sits_beside_the_summary_one_per_execution():
    assert f"s3://{BUCKET}/runs/img1/jobs/exec-1.json" == URI


def test_a_second_job_waits_for_the_first_and_ends_as_it_did_without_working(s3):
    started, runs = threading.Event(), []

    def slow() -> int:
        runs.append("first")
        started.set()
        time.sleep(0.5)
        return 0

    first = threading.Thread(target=run_once, args=(s3, URI, "job-1", slow), kwargs={"lease_s": 60})
    first.start()
    started.wait(5)
    code = run_once(s3, URI, "job-2", lambda: runs.append("second") or 0, lease_s=60, poll_s=0.05)
    first.join()

    assert code == 0 and runs == ["first"]
    assert claim(s3) == {"job_id": "job-1", "state": "done", "expires_at": pytest.approx(time.time() + 60, abs=5),
                         "exit_code": 0, "message": None}


def test_a_failed_first_job_fails_the_second_the_same_way(s3):
    plant(s3, job_id="job-1", state="done", expires_at=time.time() + 60, exit_code=2)

    assert run_once(s3, URI, "job-2", lambda: pytest.fail("measured again"), lease_s=60) == 2


@pytest.mark.parametrize("left", [
    {"job_id": "job-1", "state": "released", "exit_code": 75},  # exited 75: another may do it
    {"job_id": "job-1", "state": "running", "expires_at": 0.0},  # its holder outlived the attempt timeout: dead
    {"job_id": "job-2", "state": "running"},  # this job's own earlier attempt
], ids=["released", "expired", "own-earlier-attempt"])
def test_a_claim_without_a_live_other_holder_is_taken_over(s3, left):
    plant(s3, **{"expires_at": time.time() + 60, **left})

    assert run_once(s3, URI, "job-2", lambda: 0, lease_s=60) == 0

    assert claim(s3)["job_id"] == "job-2" and claim(s3)["state"] == "done"


def test_a_transient_exit_releases_the_claim(s3):
    assert run_once(s3, URI, "job-1", lambda: 75, lease_s=60) == 75

    assert claim(s3)["state"] == "released"


def test_an_exception_releases_the_claim_and_propagates(s3):
    def boom() -> int:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        run_once(s3, URI, "job-1", boom, lease_s=60)

    assert Claim(**claim(s3)).state == "released"


def test_the_lease_is_the_large_job_definitions_attempt_timeout():
    from skysift.aws.template import load_template

    spec = load_template(ROOT / "template.yaml")["Resources"]["LargeJobDefinition"]["Properties"]
    assert spec["Timeout"]["AttemptDurationSeconds"] == JOB_ATTEMPT_TIMEOUT_S


def test_a_claim_that_cannot_be_read_is_a_transient_exit_when_s3_is_throttled(s3, monkeypatch):
    from botocore.exceptions import ClientError

    from skysift.aws.jobclaim import run_claimed

    def throttled(**kwargs):
        raise ClientError({"Error": {"Code": "SlowDown", "Message": "slow"}, "ResponseMetadata": {"HTTPStatusCode": 503}},
                          "GetObject")

    monkeypatch.setattr(s3, "get_object", throttled)
    assert run_claimed(s3, URI, "job-1", lambda: pytest.fail("ran without its claim"), lease_s=60) == 75
