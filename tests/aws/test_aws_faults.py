"""Faults injected into the emulated system: every image cataloged once, every alert sent once.

The real state machines run on the emulation (:mod:`skysift.aws.emulation.emulate`) while faults are
injected into the AWS calls the steps make, at two levels:

* **sdk**: ``botocore`` (and ``aiobotocore``, under s3fs) raises, as if its own retries were
  used up: a ``ClientError`` (``SlowDown``, ``ProvisionedThroughputExceededException``,
  ``AccessDenied``...), a dropped connection, a response lost after the request was served, or
  the Lambda sandbox dying at that call;
* **http**: the moto server answers the request with a 5xx / throttling error once (or serves it
  and then answers 500, a lost response): botocore's own retries are what must absorb it.

Each scenario runs one image (optionally delivered twice at once, as S3 and EventBridge may)
and then checks what a user relies on: a good image is cataloged exactly once (one images row;
its sources object, partitions and rows agree), each alert reached the subscriber once (FIFO
queue messages = ``alerts`` rows, no claim left in the ledger), a permanent failure is
quarantined with its reason, and nothing was ever deleted.

``SKYSIFT_FAULT_TABLE=path`` writes the table of scenarios and outcomes (docs/RELIABILITY.md).
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs

import numpy as np
import pytest
from aws_support import PARAMETERS, ROOT, sky_file
from botocore.exceptions import ClientError, EndpointConnectionError

pytestmark = pytest.mark.slow

#: An alert claim left by a crashed invocation expires this long after the invocation began.
LAMBDA_TIMEOUT_S = 4
#: HTTP status of each error code the scenarios inject.
STATUS = {"SlowDown": 503, "InternalError": 500, "ServiceUnavailable": 503, "ThrottlingException": 400,
          "ProvisionedThroughputExceededException": 400, "AccessDenied": 403, "AccessDeniedException": 400,
          "AuthorizationError": 403, "InternalServiceException": 500, "TooManyRequestsException": 429,
          "ServerException": 500, "Throttled": 400, "NoSuchBucket": 404, "InternalServerError": 500}
FOREVER = 10**6


# -- the faults -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fault:
    """``times`` calls of ``service``/``operation`` whose key (or body) contains ``where`` fail with ``code``.

    ``code`` is an AWS error code, or ``connection`` (dropped), ``lost`` (served, then answered with
    the error ``answer``), ``crash`` (the Lambda sandbox dies at that call).
    """

    level: str  # "sdk" or "http"
    service: str
    operation: str
    code: str
    where: str = ""
    times: int = 1
    answer: str = "InternalError"  # what the caller of a ``lost`` call sees instead of the response

    def __str__(self) -> str:
        where = f" {self.where}" if self.where else ""
        times = "" if self.times == 1 else " (every call)"
        answer = f" ({self.answer})" if self.code == "lost" and self.answer != "InternalError" else ""
        return f"{self.level}: {self.service} {self.operation}{where} -> {self.code}{answer}{times}"


class Injector:
    """Every AWS call in this process passes here: faults are taken, calls counted."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.faults: list[Fault] = []
        self.left: dict[Fault, int] = {}
        self.fired: Counter[Fault] = Counter()
        self.calls: Counter[tuple[str, str]] = Counter()
        self.puts: Counter[str] = Counter()  # S3 PutObject calls (sdk level) by key

    def arm(self, faults: tuple[Fault, ...]) -> None:
        with self.lock:
            self.faults, self.left, self.fired = list(faults), {f: f.times for f in faults}, Counter()
            self.calls.clear()
            self.puts.clear()

    def disarm(self) -> None:
        with self.lock:
            self.faults, self.left = [], {}

    def take(self, level: str, service: str, operation: str, text: str) -> Fault | None:
        with self.lock:
            if level == "sdk":
                self.calls[(service, operation)] += 1
                if (service, operation) == ("s3", "PutObject"):
                    self.puts[text] += 1
            for fault in self.faults:
                if ((fault.level, fault.service, fault.operation) == (level, service, operation)
                        and fault.where in text and self.left[fault] > 0):
                    self.left[fault] -= 1
                    self.fired[fault] += 1
                    return fault
        return None


def client_error(code: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"injected {code}"},
                        "ResponseMetadata": {"HTTPStatusCode": STATUS.get(code, 500), "RequestId": "injected"}}, operation)


def _params_text(params: dict) -> str:
    return " ".join(str(params.get(k, "")) for k in ("Key", "TableName", "TopicArn", "Bucket"))


def install_sdk_faults(injector: Injector, monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore and aiobotocore raise the injected faults, as after their own retries."""
    import aiobotocore.client
    import botocore.client

    from skysift.aws.emulation.moto_patches import SandboxCrash

    sync_call, async_call = botocore.client.BaseClient._make_api_call, aiobotocore.client.AioBaseClient._make_api_call

    def fault_for(client, operation: str, params: dict) -> Fault | None:
        return injector.take("sdk", client.meta.service_model.service_name, operation, _params_text(params))

    def before(fault: Fault, operation: str) -> None:
        if fault.code == "crash":
            raise SandboxCrash(f"injected crash at {operation}")
        if fault.code == "connection":
            raise EndpointConnectionError(endpoint_url="http://injected")
        if fault.code != "lost":
            raise client_error(fault.code, operation)

    def make_api_call(client, operation, params):
        fault = fault_for(client, operation, params)
        if fault is not None:
            before(fault, operation)
            sync_call(client, operation, params)  # served; the response never arrives
            raise client_error(fault.answer, operation)
        return sync_call(client, operation, params)

    async def make_api_call_async(client, operation, params):
        fault = fault_for(client, operation, params)
        if fault is not None:
            before(fault, operation)
            await async_call(client, operation, params)
            raise client_error(fault.answer, operation)
        return await async_call(client, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", make_api_call)
    monkeypatch.setattr(aiobotocore.client.AioBaseClient, "_make_api_call", make_api_call_async)


def _request(environ: dict) -> tuple[str, str, str]:
    """(service, operation, text to match) of a request to the moto server."""
    scope = re.search(r"Credential=[^/]+/\d+/[^/]+/([^/]+)/aws4_request", environ.get("HTTP_AUTHORIZATION", ""))
    service = scope.group(1) if scope else ""
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    if service == "s3":
        path = environ.get("PATH_INFO", "")
        method = environ["REQUEST_METHOD"]
        operation = query.get("x-id", [""])[0] or {"PUT": "PutObject", "GET": "GetObject", "HEAD": "HeadObject",
                                                   "DELETE": "DeleteObject"}.get(method, method)
        return service, operation, path
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        return service, target.rsplit(".", 1)[-1], body.decode(errors="replace")
    form = parse_qs(body.decode(errors="replace"))
    if "Action" in form:
        return service, form["Action"][0], body.decode(errors="replace")
    segment = environ.get("PATH_INFO", "").rstrip("/").rsplit("/", 1)[-1]  # rest-json: /v1/submitjob
    return service, _operation_names(service).get(segment.lower(), segment), body.decode(errors="replace")


@functools.cache
def _operation_names(service: str) -> dict[str, str]:
    import botocore.session

    try:
        model = botocore.session.get_session().get_service_model(service)
    except Exception:  # not a service botocore knows: no names to map
        return {}
    return {name.lower(): name for name in model.operation_names}


def _error_response(service: str, code: str) -> tuple[int, list[tuple[str, str]], bytes]:
    status = STATUS.get(code, 500)
    if service == "s3":
        body = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>injected</Message>"
                "<RequestId>injected</RequestId><HostId>injected</HostId></Error>")
        return status, [("Content-Type", "application/xml"), ("x-amz-request-id", "injected"),
                        ("x-amz-id-2", "injected")], body.encode()
    if service == "sns":
        body = (f"<ErrorResponse><Error><Type>Receiver</Type><Code>{code}</Code><Message>injected</Message></Error>"
                "<RequestId>injected</RequestId></ErrorResponse>")
        return status, [("Content-Type", "text/xml")], body.encode()
    headers = [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", code), ("x-amzn-RequestId", "injected")]
    return status, headers, json.dumps({"__type": code, "message": "injected"}).encode()


def http_faults(injector: Injector):
    """A WSGI middleware for moto's server that answers the injected http faults."""

    def middleware(app):
        def wrapped(environ, start_response):
            service, operation, text = _request(environ)
            fault = injector.take("http", service, operation, text)
            if fault is None:
                return app(environ, start_response)
            if fault.code == "lost":  # serve it, then lose the answer
                for _ in app(environ, lambda *args, **kwargs: None):
                    pass
            status, headers, body = _error_response(service, fault.answer if fault.code == "lost" else fault.code)
            start_response(f"{status} Injected", [*headers, ("Content-Length", str(len(body)))])
            return [body]

        return wrapped

    return middleware


# -- the scenarios -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Scenario:
    id: str
    faults: tuple[Fault, ...] = ()
    twice: bool = False  # the same event delivered twice at once
    large: bool = False  # the Batch route
    reason: str | None = None  # the image's failure reason (None: cataloged)
    committed: bool = True  # a failed image still gets a failed images row (False: transient, none)
    retried: str | None = None  # an error the executions' histories must show (retried at the state)
    job_attempts: int | None = None  # attempts of the image's (last) Batch job, as DescribeJobs lists them
    jobs: int | None = None  # Batch jobs submitted for the image
    measured: int | None = None  # of them, jobs that measured the image (the others found it measured)
    note: str = ""


def sdk(service: str, operation: str, code: str, where: str = "", times: int = 1, answer: str = "InternalError") -> Fault:
    return Fault("sdk", service, operation, code, where, times, answer)


def http(service: str, operation: str, code: str, where: str = "", times: int = 1, answer: str = "InternalError") -> Fault:
    return Fault("http", service, operation, code, where, times, answer)


SCENARIOS = [
    Scenario("baseline"),
    Scenario("baseline-twice", twice=True),
    # transient, where botocore gave up: retried by the state machine
    Scenario("s3-put-sources-slowdown", (sdk("s3", "PutObject", "SlowDown", "sources/"),), retried="TransientError"),
    Scenario("s3-get-raw-slowdown", (sdk("s3", "GetObject", "SlowDown", "night-"),), note="s3fs retries it itself"),
    Scenario("s3-get-summary-503", (sdk("s3", "GetObject", "ServiceUnavailable", "summary.json"),),
             retried="TransientError"),
    Scenario("s3-put-images-500", (sdk("s3", "PutObject", "InternalError", "images/"),), retried="TransientError"),
    Scenario("glue-images-partition-throttled", (sdk("glue", "BatchCreatePartition", "ThrottlingException", "images"),),
             retried="TransientError"),
    Scenario("glue-alerts-partition-500", (sdk("glue", "BatchCreatePartition", "InternalServiceException", "alerts"),),
             retried="TransientError"),
    Scenario("dynamodb-claim-throttled", (sdk("dynamodb", "PutItem", "ProvisionedThroughputExceededException"),),
             retried="TransientError"),
    Scenario("dynamodb-complete-throttled", (sdk("dynamodb", "UpdateItem", "ProvisionedThroughputExceededException"),),
             retried="TransientError", note="sent, not marked: waits out the claim, sends again, SNS drops it"),
    Scenario("sns-connection-error", (sdk("sns", "Publish", "connection"),), retried="TransientError"),
    Scenario("sns-response-lost", (sdk("sns", "Publish", "lost"),), retried="TransientError",
             note="published twice, delivered once (FIFO deduplication)"),
    Scenario("alerts-crash-after-claim", (sdk("sns", "Publish", "crash"),), retried="Runtime.ExitError",
             note="the claim expires with the dead invocation's deadline"),
    # transient at the HTTP level: botocore's own retries absorb it
    Scenario("http-s3-put-sources-slowdown", (http("s3", "PutObject", "SlowDown", "sources/"),)),
    Scenario("http-glue-partition-500", (http("glue", "BatchCreatePartition", "InternalServiceException"),)),
    Scenario("http-dynamodb-claim-throttled", (http("dynamodb", "PutItem", "ProvisionedThroughputExceededException"),)),
    Scenario("http-sns-response-lost", (http("sns", "Publish", "lost"),),
             note="botocore sends it again; SNS drops the copy"),
    # transient, and it does not stop: retries run out
    Scenario("s3-get-summary-slowdown-forever", (sdk("s3", "GetObject", "SlowDown", "summary.json", FOREVER),),
             reason="aws_transient", committed=False, retried="TransientError"),
    # permanent: quarantined with the reason, nothing deleted
    Scenario("s3-put-sources-denied", (sdk("s3", "PutObject", "AccessDenied", "sources/", FOREVER),), reason="aws_error"),
    Scenario("sns-publish-denied", (sdk("sns", "Publish", "AuthorizationError", times=FOREVER),), reason="aws_error"),
    Scenario("dynamodb-claim-denied", (sdk("dynamodb", "PutItem", "AccessDeniedException", times=FOREVER),),
             reason="aws_error"),
    Scenario("glue-images-partition-denied-after-alerts",
             (sdk("glue", "BatchCreatePartition", "AccessDeniedException", "images"),), reason="aws_error",
             note="alerts already sent stay sent and listed; the sources are kept"),
    # the same event twice at once, with faults
    Scenario("twice-s3-put-sources-slowdown", (sdk("s3", "PutObject", "SlowDown", "sources/"),), twice=True,
             retried="TransientError"),
    Scenario("twice-sns-response-lost", (sdk("sns", "Publish", "lost"),), twice=True, retried="TransientError"),
    Scenario("twice-dynamodb-claim-throttled", (sdk("dynamodb", "PutItem", "ProvisionedThroughputExceededException"),),
             twice=True, retried="TransientError"),
    Scenario("twice-alerts-crash-after-claim", (sdk("sns", "Publish", "crash"),), twice=True,
             retried="Runtime.ExitError"),
    Scenario("twice-http-sns-response-lost", (http("sns", "Publish", "lost"),), twice=True),
    Scenario("twice-one-copy-record-denied", (sdk("s3", "PutObject", "AccessDenied", "images/"),), twice=True,
             note="one copy quarantined; the other's images row stands"),
    # the Batch route (large images)
    Scenario("batch-submit-throttled", (sdk("batch", "SubmitJob", "TooManyRequestsException"),), large=True,
             retried="Batch.TooManyRequestsException"),
    Scenario("http-batch-submit-500", (http("batch", "SubmitJob", "ServerException"),), large=True,
             retried="Batch.ServerException", note="Step Functions' own client does not retry"),
    Scenario("batch-worker-put-sources-slowdown", (sdk("s3", "PutObject", "SlowDown", "sources/"),), large=True,
             job_attempts=2, note="the job exits 75 and Batch runs it again"),
    Scenario("twice-batch-worker-put-sources-slowdown", (sdk("s3", "PutObject", "SlowDown", "sources/"),), large=True,
             twice=True),
    # SubmitJob served (the job runs) but its response lost: Step Functions retries and submits a second job
    Scenario("http-batch-submit-response-lost", (http("batch", "SubmitJob", "lost", answer="ServerException"),),
             large=True, retried="Batch.ServerException", jobs=2, measured=1,
             note="two jobs submitted; the second finds the first's work and measures nothing"),
    Scenario("batch-submit-response-lost", (sdk("batch", "SubmitJob", "lost", answer="ServerException"),),
             large=True, retried="Batch.ServerException", jobs=2, measured=1),
    Scenario("twice-http-batch-submit-response-lost", (http("batch", "SubmitJob", "lost", answer="ServerException"),),
             large=True, twice=True, retried="Batch.ServerException", jobs=3, measured=2),
]


# -- the system under test ---------------------------------------------------------------------
class Systems:
    """One emulation at a time (moto's server is one per process), restarted when the parameters change."""

    def __init__(self) -> None:
        self.current = None
        self.large: bool | None = None

    def get(self, large: bool):
        from skysift.aws.emulation.emulate import Emulation

        if self.current is None or self.large != large:
            self.stop()
            parameters = {**PARAMETERS, **({"SmallImageMaxPixels": 10_000} if large else {})}
            self.current, self.large = Emulation(ROOT, parameters=parameters, lambda_timeout_s=LAMBDA_TIMEOUT_S), large
            self.current.start()
        return self.current

    def stop(self) -> None:
        if self.current is not None:
            self.current.stop()
            self.current = None


OUTCOMES: list[dict] = []


@pytest.fixture(scope="module")
def injector():
    from skysift.aws.emulation.emulate import MotoServer

    injector = Injector()
    with pytest.MonkeyPatch.context() as monkeypatch, MotoServer.get().intercept(http_faults(injector)):
        install_sdk_faults(injector, monkeypatch)
        monkeypatch.setattr("skysift.aws.jobclaim.CLAIM_POLL_S", 0.5)  # a job waiting for another's claim
        yield injector
    table = os.environ.get("SKYSIFT_FAULT_TABLE")
    if table and OUTCOMES:
        Path(table).write_text(markdown(OUTCOMES))


@pytest.fixture(scope="module")
def systems(injector):
    systems = Systems()
    yield systems
    systems.stop()


# -- what is checked after each scenario -------------------------------------------------------
def _errors(aws, execution: dict) -> list[str]:
    history = aws.client("stepfunctions").get_execution_history(executionArn=execution["executionArn"],
                                                                 maxResults=1000)["events"]
    return [details["error"] for e in history if e["type"].endswith("Failed")
            for key, details in e.items()
            if key.endswith("FailedEventDetails") and key != "executionFailedEventDetails" and "error" in details]


def _objects(aws, prefix: str) -> list[str]:
    pages = aws.client("s3").get_paginator("list_objects_v2").paginate(Bucket=aws.catalog_bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def _partitions(aws, table: str) -> set[tuple[str, ...]]:
    import awswrangler as wr

    return {tuple(v) for v in wr.catalog.get_parquet_partitions(database=aws.database, table=table).values()}


def _ledger_in_progress(aws) -> int:
    table = aws.names["AlertLedger"]
    items = aws.client("dynamodb").scan(TableName=table)["Items"]
    return sum(item["status"]["S"] == "INPROGRESS" for item in items)


JOB_STATUSES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED")


def _jobs(aws, name: str) -> list[dict]:
    """Every Batch job named ``name``, described."""
    batch = aws.client("batch")
    ids = [j["jobId"] for status in JOB_STATUSES
           for j in batch.list_jobs(jobQueue=aws.names["LargeJobQueue"], jobStatus=status)["jobSummaryList"]
           if j["jobName"] == name]
    return batch.describe_jobs(jobs=ids)["jobs"] if ids else []


def _wait_for_jobs(aws, name: str, timeout_s: float = 120) -> list[dict]:
    """The jobs named ``name`` once none is still running (a job whose submission Step Functions
    never saw runs on, unwatched)."""
    deadline = time.monotonic() + timeout_s
    while True:
        jobs = _jobs(aws, name)
        if all(j["status"] in ("SUCCEEDED", "FAILED") for j in jobs):
            return jobs
        assert time.monotonic() < deadline, f"Batch jobs {name} still running"
        time.sleep(0.5)


def run_scenario(aws, injector: Injector, scenario: Scenario, index: int, tmp_path: Path) -> dict:
    sky = sky_file(tmp_path / "sky.fits", center=(20.0 + 7.0 * index, 10.0))
    key = f"night-2026-01-01/{index:02d}-{scenario.id}.fits"
    queue = aws.subscribe_queue(f"scenario-{index:02d}")
    injector.arm(scenario.faults)
    t0 = time.monotonic()
    try:
        uri = aws.upload(sky, key)
        if scenario.twice:  # EventBridge delivers the same event again, at once
            first = next(e for e in aws.executions() if key in e["input"])
            aws.client("stepfunctions").start_execution(stateMachineArn=aws.ingest_arn, input=first["input"])
        executions = [e for e in aws.wait(timeout_s=240) if key in e["input"]]
    finally:
        injector.disarm()
    seconds = time.monotonic() - t0
    rows = [r for r in aws.read_table("images").to_pylist() if r["uri"] == uri]
    image_id = rows[0]["image_id"] if rows else None
    jobs = _wait_for_jobs(aws, f"skysift-large-{image_id}") if scenario.large and image_id else []
    alerts = [a for a in aws.read_table("alerts").to_pylist() if a["image_id"] == image_id] if image_id else []
    messages = [json.loads(m["Message"])["alert_id"] for m in aws.receive(queue)]
    return {
        "scenario": scenario, "executions": executions, "rows": rows, "alerts": alerts, "messages": messages,
        "errors": [error for e in executions for error in _errors(aws, e)], "seconds": seconds,
        "job_attempts": max((len(j.get("attempts", [])) for j in jobs), default=None), "jobs": len(jobs),
        "measured": sum(n for key, n in injector.puts.items() if key.startswith("sources/") and f"{image_id}." in key),
        "fired": dict(injector.fired), "deletes": injector.calls[("s3", "DeleteObject")]
        + injector.calls[("s3", "DeleteObjects")], "uri": uri, "in_progress": _ledger_in_progress(aws),
    }


def check(aws, outcome: dict) -> None:
    scenario: Scenario = outcome["scenario"]
    executions, rows = outcome["executions"], outcome["rows"]
    assert len(executions) == (2 if scenario.twice else 1)
    for fault in scenario.faults:  # a fault that never fired would make the scenario a no-op
        assert outcome["fired"].get(fault, 0) >= 1, f"{fault} never fired"
    assert outcome["deletes"] == 0, "a step deleted an object"
    assert outcome["in_progress"] == 0, "an alert claim was left behind"
    # each alert reached the subscriber once, and the alerts table lists exactly what was sent
    assert len(outcome["messages"]) == len(set(outcome["messages"])), "an alert was delivered twice"
    assert sorted(outcome["messages"]) == sorted(a["alert_id"] for a in outcome["alerts"])
    if scenario.retried:
        assert scenario.retried in outcome["errors"], outcome["errors"]
    if scenario.job_attempts:
        assert outcome["job_attempts"] == scenario.job_attempts
    if scenario.jobs is not None:
        assert outcome["jobs"] == scenario.jobs
    if scenario.measured is not None:  # each job that measured the image wrote its sources object once
        assert outcome["measured"] == scenario.measured, "the image was measured more than once"
    if scenario.reason is None:  # cataloged exactly once: files = partitions = images rows
        assert [r["status"] for r in rows] == ["ok"], [(r["status"], r["error_reason"]) for r in rows]
        row = rows[0]
        assert "SUCCEEDED" in [e["status"] for e in executions]
        assert len(_objects(aws, "images/")) == len(set(_objects(aws, "images/")))
        sources = [k for k in _objects(aws, "sources/") if row["image_id"] in k]
        assert len(sources) == 1
        partition = (row["survey"], row["band"], row["obs_night"])
        for table in ("sources", "images", "alerts"):
            assert partition in _partitions(aws, table), table
        n_rows = sum(1 for s in aws.read_table("sources").column("image_id").to_pylist() if s == row["image_id"])
        assert n_rows == row["n_sources"] > 0
        assert len(outcome["messages"]) >= 1, "the sky raises alerts: none was sent"
        return
    failed = [e for e in executions if e["status"] == "FAILED"]
    assert failed and all(e["error"] == scenario.reason for e in failed), [(e["status"], e.get("error")) for e in executions]
    image_ids = {r["image_id"] for r in rows}
    if scenario.committed:
        assert [(r["status"], r["error_reason"]) for r in rows] == [("failed", scenario.reason)]
    else:  # retries ran out: the image is not judged, it has no images row
        assert rows == []
    outcome_key = f"runs/{next(iter(image_ids))}/outcome.json" if image_ids else None
    records = [k for k in _objects(aws, "quarantine/") if not image_ids or next(iter(image_ids)) in k]
    assert records, "no quarantine record"
    reasons = {aws.get_json(f"s3://{aws.catalog_bucket}/{k}")["reason"] for k in records}
    assert scenario.reason in reasons
    if outcome_key:
        assert aws.get_json(f"s3://{aws.catalog_bucket}/{outcome_key}")["status"] == "failed"


def summary(outcome: dict) -> dict:
    scenario: Scenario = outcome["scenario"]
    statuses = Counter(e["status"] if e["status"] == "SUCCEEDED" else f"{e['status']} ({e.get('error')})"
                       for e in outcome["executions"])
    retried = Counter(outcome["errors"])
    ok = [r for r in outcome["rows"] if r["status"] == "ok"]
    return {
        "scenario": scenario.id + (" (twice at once)" if scenario.twice else ""),
        "faults": "; ".join(str(f) for f in scenario.faults) or "none",
        "executions": ", ".join(f"{n}x {s}" for s, n in sorted(statuses.items())),
        "task errors (retried or caught)": ", ".join(f"{e} x{n}" for e, n in sorted(retried.items())) or "-",
        "images rows": ", ".join(f"{r['status']}" + (f" ({r['error_reason']})" if r["error_reason"] else "")
                                 for r in outcome["rows"]) or "none",
        "sources rows": ok[0]["n_sources"] if ok else "-",
        "alerts sent = rows": f"{len(outcome['messages'])} = {len(outcome['alerts'])}",
        "seconds": f"{outcome['seconds']:.0f}",
        "note": scenario.note,
    }


def markdown(outcomes: list[dict]) -> str:
    columns = list(outcomes[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(o[c]).replace("|", "/") for c in columns) + " |" for o in outcomes]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("index, scenario", list(enumerate(SCENARIOS)), ids=[s.id for s in SCENARIOS])
def test_fault_leaves_every_image_cataloged_once_and_every_alert_sent_once(systems, injector, index, scenario,
                                                                          tmp_path):
    aws = systems.get(scenario.large)

    outcome = run_scenario(aws, injector, scenario, index, tmp_path)

    OUTCOMES.append(summary(outcome))
    check(aws, outcome)


# -- TimeLagAnalysis -----------------------------------------------------------------------------
@dataclass(frozen=True)
class TimeLagScenario:
    id: str
    faults: tuple[Fault, ...] = ()
    failed: bool = False  # the execution fails with TimeLagFailed
    no_frames: bool = False  # a request whose time range holds no frames (a bad request: exit 2)
    retried: str | None = None  # an error the execution's history must show (retried at the state)
    job_attempts: int | None = None  # attempts of the (last) job, as DescribeJobs lists them
    jobs: int = 1  # Batch jobs submitted
    note: str = ""


TIMELAG_SCENARIOS = [
    TimeLagScenario("timelag-baseline"),
    # transient, retried: the output appears once
    TimeLagScenario("timelag-worker-put-lag-map-503", (sdk("s3", "PutObject", "ServiceUnavailable", "/lag.fits"),),
                    job_attempts=2, note="the job exits 75 and Batch runs it again"),
    TimeLagScenario("timelag-worker-get-request-500", (sdk("s3", "GetObject", "InternalError", "/{name}.json"),),
                    job_attempts=2, note="the job exits 75 and Batch runs it again"),
    TimeLagScenario("timelag-http-write-request-500", (http("s3", "PutObject", "InternalError", "timelag-requests/"),),
                    retried="S3.S3Exception"),
    TimeLagScenario("timelag-http-read-summary-503", (http("s3", "GetObject", "ServiceUnavailable", "lag.fits.json"),),
                    retried="S3.S3Exception"),
    TimeLagScenario("timelag-http-submit-response-lost", (http("batch", "SubmitJob", "lost", answer="ServerException"),),
                    retried="Batch.ServerException", jobs=2,
                    note="two jobs submitted; the second waits for the first and computes nothing"),
    # permanent: TimeLagFailed with a one-line cause, nothing left under timelag/{execution}/
    TimeLagScenario("timelag-no-frames", no_frames=True, failed=True),
    TimeLagScenario("timelag-worker-put-png-denied", (sdk("s3", "PutObject", "AccessDenied", "/lag.png", FOREVER),),
                    failed=True, note="the lag map written before the refusal is discarded"),
    TimeLagScenario("timelag-worker-put-png-slowdown-forever",
                    (sdk("s3", "PutObject", "ServiceUnavailable", "/lag.png", FOREVER),), failed=True, job_attempts=3,
                    note="Batch's attempts run out; the lag map is discarded"),
]


@pytest.fixture(scope="module")
def solar_series(tmp_path_factory):
    sys.path.insert(0, str(ROOT / "tests" / "timelag"))
    from solar_series import make_lag_series

    return make_lag_series(tmp_path_factory.mktemp("faults-timelag"), n_frames=12, shape=(48, 48), seed=11)


def _timelag_request(series, no_frames: bool) -> dict:
    from solar_series import lag_request

    shift = timedelta(days=365 if no_frames else 0)
    request = lag_request(series, ROOT / "unused.fits", scheduler="threads", start=(series.start + shift).isoformat(),
                          end=(series.end + shift).isoformat())
    del request["output"]  # placed under timelag/{execution name}/
    return request


@pytest.mark.parametrize("scenario", TIMELAG_SCENARIOS, ids=[s.id for s in TIMELAG_SCENARIOS])
def test_timelag_fault_leaves_one_result_or_a_clean_failure(systems, injector, solar_series, scenario):
    aws = systems.get(bool(systems.large))
    name = f"{scenario.id}-{int(time.time())}"
    faults = tuple(replace(f, where=f.where.format(name=name)) for f in scenario.faults)  # "{name}": this execution's
    injector.arm(faults)
    try:
        arn = aws.start_timelag(_timelag_request(solar_series, scenario.no_frames), name=name)
        aws.wait(timeout_s=240)
    finally:
        injector.disarm()
    jobs = _wait_for_jobs(aws, f"skysift-timelag-{name}")
    execution = aws.client("stepfunctions").describe_execution(executionArn=arn)
    results = _objects(aws, f"timelag/{name}/")
    summaries = [k for k, n in injector.puts.items() for _ in range(n) if k.startswith(f"timelag/{name}/lag.fits.json")]

    for fault in faults:
        assert injector.fired.get(fault, 0) >= 1, f"{fault} never fired"
    assert len(jobs) == scenario.jobs
    if scenario.job_attempts:
        assert max(len(j.get("attempts", [])) for j in jobs) == scenario.job_attempts
    if scenario.retried:
        assert scenario.retried in _errors(aws, execution), _errors(aws, execution)
    if scenario.failed:
        assert execution["status"] == "FAILED" and execution["error"] == "TimeLagFailed"
        cause = execution["cause"]
        assert cause and "\n" not in cause and len(cause) <= 500, cause
        assert results == [], "a failed analysis left objects that look like a result"
        return
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    assert sorted(results) == [f"timelag/{name}/lag.fits", f"timelag/{name}/lag.fits.json", f"timelag/{name}/lag.png"]
    assert len(summaries) == 1, "the analysis ran more than once"
    output = json.loads(execution["output"])
    assert output["output"] == f"s3://{aws.catalog_bucket}/timelag/{name}/lag.fits"
    assert output["summary"]["status"] == "ok" and output["summary"]["frames"] == [12, 12]


# -- an earlier image arriving late re-opens the later image's alerts ----------------------------
@dataclass(frozen=True)
class ReopenScenario:
    id: str
    fault: Fault  # armed once the later image is in; "{later}" in its where: its image_id (only its alerts rows are written then)
    failed: str | None = None  # the earlier image's execution fails with this reason (its row stays ok)
    note: str = ""


REOPEN_SCENARIOS = [
    ReopenScenario("reopen-put-alerts-rows-slowdown", sdk("s3", "PutObject", "SlowDown", "/{later}.parquet"),
                   note="sent, rows not stored: retried, the retry sends nothing again and stores them"),
    ReopenScenario("reopen-put-alerts-rows-denied", sdk("s3", "PutObject", "AccessDenied", "/{later}.parquet", FOREVER),
                   failed="aws_error", note="sent once; the earlier image stays recorded; a new delivery stores the rows"),
]


@pytest.mark.parametrize("index, scenario", list(enumerate(REOPEN_SCENARIOS)), ids=[s.id for s in REOPEN_SCENARIOS])
def test_reopened_alert_decision_sends_the_new_alert_once_despite_faults(systems, injector, index, scenario, tmp_path):
    from astropy.io import fits

    aws = systems.get(bool(systems.large))
    center = (300.0 + 7.0 * index, -40.0)
    earlier = sky_file(tmp_path / "earlier.fits", center=center)
    later = sky_file(tmp_path / "later.fits", center=center, night="2026-01-02")
    with fits.open(later, mode="update") as hdul:  # a transient at (150, 50), absent from the earlier night
        y, x = np.mgrid[-4:5, -4:5]
        hdul[0].data[46:55, 146:155] += (3000 * np.exp(-(x**2 + y**2) / (2 * 1.3**2))).astype(np.float32)
    queue = aws.subscribe_queue(f"reopen-{index:02d}", {"kind": ["new_source"]})
    later_uri = aws.upload(later, f"night-2026-01-02/reopen-{index:02d}.fits")
    aws.wait(timeout_s=240)
    [later_row] = [r for r in aws.read_table("images").to_pylist() if r["uri"] == later_uri]
    fault = replace(scenario.fault, where=scenario.fault.where.format(later=later_row["image_id"]))
    key = f"night-2026-01-01/reopen-{index:02d}.fits"
    injector.arm((fault,))
    try:
        earlier_uri = aws.upload(earlier, key)
        executions = [e for e in aws.wait(timeout_s=240) if key in e["input"]]
    finally:
        injector.disarm()

    assert injector.fired.get(fault, 0) >= 1, f"{fault} never fired"
    [execution] = executions
    new = [json.loads(m["Message"]) for m in aws.receive(queue)]
    assert [(a["rule"], a["image_id"]) for a in new] == [("new_source", later_row["image_id"])]  # once
    rows = [r for r in aws.read_table("images").to_pylist() if r["uri"] in (earlier_uri, later_uri)]
    assert sorted(r["status"] for r in rows) == ["ok", "ok"]  # both stay cataloged
    listed = [a for a in aws.read_table("alerts").to_pylist() if a["alert_id"] == new[0]["alert_id"]]
    assert _ledger_in_progress(aws) == 0
    if scenario.failed is None:
        assert execution["status"] == "SUCCEEDED" and "TransientError" in _errors(aws, execution)
        assert len(listed) == 1
        return
    assert execution["status"] == "FAILED" and execution["error"] == scenario.failed
    assert listed == []  # sent but not listed yet: the rows could not be written
    aws.client("stepfunctions").start_execution(stateMachineArn=aws.ingest_arn, input=execution["input"])
    again = [e for e in aws.wait(timeout_s=240) if key in e["input"]]
    assert sorted(e["status"] for e in again) == ["FAILED", "SUCCEEDED"]
    assert aws.receive(queue) == []  # nothing sent twice
    assert len([a for a in aws.read_table("alerts").to_pylist() if a["alert_id"] == new[0]["alert_id"]]) == 1
