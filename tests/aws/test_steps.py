"""The step tier: each Lambda handler (functions/*/app.py) and step on a bare moto, no state machine.

Every other AWS test stands the whole system of template.yaml up (state machines, EventBridge,
Batch) and drives it by uploads. Here a handler is called directly, as Lambda calls it, with a
minimal setup: the two buckets, the Glue database and tables, the alert topic and its ledger.
What is checked is each function's contract with the state machine: the event model it accepts
(a malformed event is ``PermanentError`` with reason ``malformed_event``, the step never runs),
the result it returns, the error names the state machine retries (``TransientError``) or catches
(``PermanentError``), and its metric, counted only when it succeeded.

moto runs as a local server (one per process, reset for each test) rather than ``mock_aws``:
``mock_aws`` intercepts botocore's synchronous client only, and the steps read images through
s3fs, whose aiobotocore client it does not serve (``TypeError: object bytes can't be used in
'await' expression``). boto3, awswrangler and s3fs all talk to the server through
``AWS_ENDPOINT_URL``, as they do in the emulation.
"""

from __future__ import annotations

import importlib
import json
import uuid
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from aws_support import EVENTS, ROOT, sky_file
from botocore.exceptions import ClientError

from skysift.aws import steps
from skysift.aws.faults import PermanentError, TransientError
from skysift.aws.glue import TABLES, glue_columns, partition_keys

REGION = "us-east-1"
RAW, CATALOG, DATABASE, LEDGER = "steps-raw", "steps-catalog", "steps_db", "steps-ledger"
#: functions/<name>/app.py -> its metric (as the template's functions are wired).
FUNCTIONS = {"inspect_image": "ImagesInspected", "detect_small": "ImagesMeasured", "alerts": "ImagesAlerted",
             "record": "ImagesRecorded", "quarantine": "ImagesQuarantined", "survey_report": "SurveyReports"}


@pytest.fixture(scope="module")
def server():
    from skysift.aws.emulation.emulate import MotoServer

    return MotoServer.get()


@pytest.fixture
def functions(monkeypatch):
    """functions/*/app.py importable, as the image's working directory has them; Powertools set as the template sets it."""
    monkeypatch.syspath_prepend(str(ROOT))
    for name, value in {"POWERTOOLS_SERVICE_NAME": "skysift", "POWERTOOLS_METRICS_NAMESPACE": "skysift",
                        "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_DEV": "false"}.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def aws(server, functions, monkeypatch):
    """A fresh moto with the buckets, Glue tables, FIFO topic and ledger the steps use; the functions'
    environment set as the template sets it."""
    import boto3

    server.reset()
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
           "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION, "AWS_ENDPOINT_URL": server.url,
           "SKYSIFT_STAGE": "steps", "SKYSIFT_RAW_BUCKET": RAW, "SKYSIFT_CATALOG_BUCKET": CATALOG,
           "SKYSIFT_GLUE_DATABASE": DATABASE, "SKYSIFT_ALERT_LEDGER_TABLE": LEDGER, "SKYSIFT_ALERTS__HIGH_SNR": "200"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    session = boto3.Session(region_name=REGION)
    s3 = session.client("s3")
    for bucket in (RAW, CATALOG):
        s3.create_bucket(Bucket=bucket)
    glue = session.client("glue")
    glue.create_database(DatabaseInput={"Name": DATABASE})
    for table in TABLES:
        glue.create_table(DatabaseName=DATABASE, TableInput={
            "Name": table, "PartitionKeys": partition_keys(), "TableType": "EXTERNAL_TABLE",
            "StorageDescriptor": {"Columns": glue_columns(table), "Location": f"s3://{CATALOG}/{table}/"}})
    topic = session.client("sns").create_topic(Name="steps-alerts.fifo", Attributes={"FifoTopic": "true"})["TopicArn"]
    monkeypatch.setenv("SKYSIFT_ALERT_TOPIC_ARN", topic)
    session.client("dynamodb").create_table(
        TableName=LEDGER, BillingMode="PAY_PER_REQUEST", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
    return s3


def handler(function: str):
    return importlib.import_module(f"functions.{function}.app").handler


def invoke(function: str, event: dict) -> dict:
    """Call a function's handler as Lambda does: the raw event and a Lambda context."""
    from skysift.aws.emulation.emulate import LambdaContext

    context = LambdaContext(function_name=function, memory_limit_in_mb=1024, aws_request_id=str(uuid.uuid4()),
                            invoked_function_arn=f"arn:aws:lambda:{REGION}:123456789012:function:{function}",
                            timeout_s=60)
    return handler(function)(event, context)


def metrics(captured: str) -> list[str]:
    """Names of the metrics flushed (EMF documents on stdout), in order."""
    names = []
    for line in captured.splitlines():
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict) and "_aws" in document:
            names += [m["Name"] for d in document["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]]
    return names


def upload(s3, path: Path | bytes, key: str) -> dict:
    """Put an object in the raw bucket; the EventBridge event S3 would send for it."""
    body = path if isinstance(path, bytes) else path.read_bytes()
    etag = s3.put_object(Bucket=RAW, Key=key, Body=body)["ETag"].strip('"')
    event = json.loads((EVENTS / "eventbridge-s3-object-created.json").read_text())
    event["detail"]["bucket"]["name"] = RAW
    event["detail"]["object"].update(key=key, size=len(body), eTag=etag)
    return event


def images_objects(s3) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=CATALOG, Prefix="images/").get("Contents", []))


def images_rows(s3) -> list[dict]:
    import io

    import pyarrow.parquet as pq

    return [row for key in images_objects(s3)
            for row in pq.read_table(io.BytesIO(s3.get_object(Bucket=CATALOG, Key=key)["Body"].read())).to_pylist()]


def nan_sky(sky: Path, path: Path) -> Path:
    """The sky's header (celestial WCS and all) over pixels that are all NaN: it inspects, it cannot be measured."""
    with fits.open(sky) as hdus:
        fits.PrimaryHDU(np.full_like(hdus[0].data, np.nan), header=hdus[0].header).writeto(path)
    return path


# -- event models: validated at the edge ---------------------------------------------------------
@pytest.mark.parametrize("function", sorted(FUNCTIONS))
@pytest.mark.parametrize("event", [{}, {"source": "aws.s3"}, {"state": {}, "execution_id": 7}, []],
                         ids=["empty", "source-not-an-object", "wrong-types", "not-an-object"])
def test_a_malformed_event_is_a_permanent_malformed_event_and_counts_nothing(functions, capsys, function, event):
    """Refused before the step runs: no AWS call is made (nothing is set up here to answer one)."""
    with pytest.raises(PermanentError) as failure:
        invoke(function, event)
    assert failure.value.record["reason"] == "malformed_event"
    assert failure.value.record["error_type"] == "MalformedEvent"
    assert metrics(capsys.readouterr().out) == []


def test_an_s3_event_without_an_object_key_is_malformed(functions):
    event = json.loads((EVENTS / "eventbridge-s3-object-created.json").read_text())
    del event["detail"]["object"]["key"]
    with pytest.raises(PermanentError, match="malformed_event") as failure:
        invoke("inspect_image", event)
    assert "Object Created" in failure.value.record["message"]


@pytest.mark.parametrize(("function", "sample"), [
    ("inspect_image", "eventbridge-s3-object-created.json"), ("detect_small", "detect-small-input.json"),
    ("alerts", "alerts-input.json"), ("record", "record-input.json"), ("quarantine", "quarantine-input.json"),
    ("survey_report", "survey-report-input.json"), ("survey_report", "survey-start.json"),
    ("later_images", "later-images-input.json"), ("reopen_alert", "reopen-alert-input.json"),
])
def test_every_sample_event_fits_its_functions_event_model(functions, function, sample):
    document = json.loads((EVENTS / sample).read_text())
    if sample == "survey-start.json":  # Report gets the survey's input as its state
        document = {"execution_id": "arn:aws:states:us-east-1:1:execution:survey:x", "state": document}

    parsed = steps.parse_event(document, handler(function).event_model)

    if function == "quarantine":
        assert parsed.state.source.key == "night-2026-01-01/error-page.fits"
        assert set(parsed.state.caught) == {"Inspect"} and parsed.state.image is None


def test_quarantine_takes_a_malformed_event_that_failed_inspect(aws, capsys):
    """Inspect refused an event naming no object: Quarantine still records the failure (no images row)."""
    bad = {"detail-type": "Object Created", "source": "aws.s3", "detail": {"bucket": {}}}
    with pytest.raises(PermanentError) as refused:
        invoke("inspect_image", bad)
    cause = json.dumps({"errorType": "PermanentError", "errorMessage": str(refused.value)})
    result = invoke("quarantine", {"execution_id": "arn:aws:states:us-east-1:1:execution:ingest:bad",
                                   "state": {**bad, "caught": {"Inspect": {"Error": "PermanentError", "Cause": cause}}}})
    assert result["reason"] == "malformed_event"
    assert aws.get_object(Bucket=CATALOG, Key=result["record_uri"].split(f"{CATALOG}/", 1)[1])
    assert metrics(capsys.readouterr().out) == ["ImagesQuarantined"]


# -- each step's success, and its metric -----------------------------------------------------------
def test_the_small_route_step_by_step_returns_each_result_model_and_counts_each_metric_once(aws, tmp_path, capsys):
    event = upload(aws, sky_file(tmp_path / "sky.fits"), "night/sky.fits")

    state = invoke("inspect_image", event)
    detect = invoke("detect_small", state)
    alerts = invoke("alerts", state)
    record = invoke("record", {**state, "detect": detect, "alerts": alerts})

    assert state["source"] == {"bucket": RAW, "key": "night/sky.fits"}
    assert (state["image"]["route"], state["image"]["info"]["wcs_kind"]) == ("small", "celestial")
    assert detect["status"] == "ok" and detect["n_sources"] > 10 and detect["sources_uri"].startswith(f"s3://{CATALOG}/sources/")
    assert alerts["n_alerts"] >= 1 and alerts["n_published"] == alerts["n_alerts"]
    assert state["hdus"] == [None]  # one image: the first image HDU
    assert record == {"image_id": state["image"]["info"]["image_id"], "status": "ok", "route": "small",
                      "n_sources": detect["n_sources"], "n_alerts": alerts["n_alerts"]}
    assert [r["status"] for r in images_rows(aws)] == ["ok"]
    assert metrics(capsys.readouterr().out) == ["ImagesInspected", "ImagesMeasured", "ImagesAlerted", "ImagesRecorded"]

    report = invoke("survey_report", {"execution_id": "arn:aws:states:us-east-1:1:execution:survey:night",
                                      "state": {"bucket": RAW, "prefix": "night/"}})
    assert (report["total"], report["succeeded"], report["failed"]) == (1, 1, 0)
    assert metrics(capsys.readouterr().out) == ["SurveyReports"]


def test_a_failed_detection_is_permanent_and_not_counted_as_measured(aws, tmp_path, capsys):
    event = upload(aws, nan_sky(sky_file(tmp_path / "sky.fits"), tmp_path / "nan.fits"), "night/nan.fits")
    state = invoke("inspect_image", event)

    with pytest.raises(PermanentError) as failure:
        invoke("detect_small", state)

    assert failure.value.record["reason"] == "all_nan"
    assert metrics(capsys.readouterr().out) == ["ImagesInspected"]  # not ImagesMeasured


def test_a_throttled_write_is_a_transient_error_and_not_counted(aws, tmp_path, capsys, monkeypatch):
    state = invoke("inspect_image", upload(aws, sky_file(tmp_path / "sky.fits"), "night/sky.fits"))

    def slow_down(*args, **kwargs):
        raise ClientError({"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."},
                           "ResponseMetadata": {"HTTPStatusCode": 503}}, "PutObject")

    monkeypatch.setattr(steps, "put_json", slow_down)
    with pytest.raises(TransientError) as failure:
        invoke("detect_small", state)

    assert (failure.value.record["reason"], failure.value.record["code"]) == ("aws_transient", "SlowDown")
    assert metrics(capsys.readouterr().out) == ["ImagesInspected"]


def test_a_missing_object_is_permanent_not_found(aws):
    event = upload(aws, b"", "night/gone.fits")
    aws.delete_object(Bucket=RAW, Key="night/gone.fits")
    with pytest.raises(PermanentError) as failure:
        invoke("inspect_image", event)
    assert failure.value.record["reason"] == "not_found"


def test_the_error_names_are_those_the_state_machine_retries_and_catches():
    definition = json.loads((ROOT / "statemachine" / "ingest.asl.json").read_text())
    states = {**definition["States"], **definition["States"]["Images"]["ItemProcessor"]["States"]}
    lambda_states = {name: state for name, state in states.items()
                     if state.get("Resource", "").endswith(":lambda:invoke") and name not in ("Quarantine", "QuarantineImage")}
    assert lambda_states
    for name, state in lambda_states.items():
        retried = {e for retrier in state["Retry"] for e in retrier["ErrorEquals"]}
        caught = {e for catcher in state["Catch"] for e in catcher["ErrorEquals"]}
        assert TransientError.__name__ in retried and PermanentError.__name__ not in retried, name
        assert "States.ALL" in caught, name  # PermanentError, and TransientError once its retries ran out


# -- one images row per image_id -------------------------------------------------------------------
def _inspect_failed(event: dict) -> dict:
    """The Quarantine input of an execution whose Inspect failed with an unexpected error (internal_error)."""
    record = {"reason": "internal_error", "message": "RuntimeError: dictionary changed size during iteration",
              "error_type": "InternalError", "uri": None, "transient": False}
    cause = json.dumps({"errorType": "PermanentError", "errorMessage": json.dumps(record)})
    return {"execution_id": f"arn:aws:states:us-east-1:1:execution:ingest:{uuid.uuid4()}",
            "state": {**event, "caught": {"Inspect": {"Error": "PermanentError", "Cause": cause}}}}


@pytest.mark.parametrize("order", ["failure-then-success", "success-then-failure"])
def test_an_image_quarantined_after_inspect_and_ingested_by_another_execution_has_one_images_row(aws, tmp_path, order):
    """Two executions of one upload (S3 delivers at least once; a survey ingests it again): one's Inspect
    fails for a reason that is not the file's, the other succeeds. The images row is the commit point:
    one object per image_id, the success kept, whichever finishes last."""
    event = upload(aws, sky_file(tmp_path / "sky.fits"), "night/sky.fits")

    def succeed() -> dict:
        state = invoke("inspect_image", event)
        invoke("detect_small", state)
        return invoke("record", state)

    if order == "failure-then-success":
        quarantined = invoke("quarantine", _inspect_failed(event))
        recorded = succeed()
    else:
        recorded = succeed()
        quarantined = invoke("quarantine", _inspect_failed(event))

    assert quarantined["image_id"] == recorded["image_id"]
    rows = images_rows(aws)
    assert [(r["image_id"], r["status"]) for r in rows] == [(recorded["image_id"], "ok")]
    assert len(images_objects(aws)) == 1


def test_an_unreadable_file_quarantined_after_inspect_gets_its_failed_row(aws):
    event = upload(aws, b"<html>503 Service Unavailable</html>", "night/error-page.fits")
    with pytest.raises(PermanentError) as refused:
        invoke("inspect_image", event)
    cause = json.dumps({"errorType": "PermanentError", "errorMessage": str(refused.value)})
    result = invoke("quarantine", {"execution_id": "arn:aws:states:us-east-1:1:execution:ingest:page",
                                   "state": {**event, "caught": {"Inspect": {"Error": "PermanentError", "Cause": cause}}}})
    assert result["reason"] == "not_fits"
    [row] = images_rows(aws)
    assert (row["status"], row["route"], row["error_reason"], row["image_id"]) == ("failed", "inspect", "not_fits", result["image_id"])


# -- a file of several images: one chain per image HDU -------------------------------------------
def test_inspect_lists_a_mosaics_ccds_and_each_ccds_chain_records_its_own_image(aws, tmp_path):
    from skysift.io.fits import make_image_id
    from test_multi_extension import write_mosaic

    event = upload(aws, write_mosaic(tmp_path / "mosaic.fits").read_bytes(), "night/mosaic.fits")
    uri, etag = f"s3://{RAW}/night/mosaic.fits", "etag:" + event["detail"]["object"]["eTag"]

    listing = invoke("inspect_image", event)
    records = []
    for hdu in listing["hdus"]:
        state = invoke("inspect_image", {"source": listing["source"], "hdu": hdu})  # an item of the Map
        assert state["hdus"] == [hdu]  # an image's Inspect lists nothing
        invoke("detect_small", state)
        records.append(invoke("record", state))

    assert listing["hdus"] == [None, 2, 3] and listing["image"]["info"]["hdu"] == 1
    assert [r["image_id"] for r in records] == [make_image_id(uri, etag, h) for h in (None, 2, 3)]
    assert sorted(r["hdu"] for r in images_rows(aws)) == [1, 2, 3]
    report = invoke("survey_report", {"execution_id": "arn:aws:states:us-east-1:1:execution:survey:night",
                                      "state": {"bucket": RAW, "prefix": "night/"}})
    assert (report["files"], report["total"], report["succeeded"], report["failed"]) == (1, 3, 3, 0)


def test_quarantine_of_an_image_inspect_could_not_read_records_that_image_not_the_files_first(aws, tmp_path):
    from skysift.io.fits import make_image_id
    from test_multi_extension import write_mosaic

    cut = write_mosaic(tmp_path / "mosaic.fits").read_bytes() + b"XTENSION= 'IMAGE   '" + b" " * 100
    event = upload(aws, cut, "night/cut.fits")
    uri, etag = f"s3://{RAW}/night/cut.fits", "etag:" + event["detail"]["object"]["eTag"]
    listing = invoke("inspect_image", event)
    assert listing["hdus"] == [None, 2, 3, 5]  # a fourth CCD's upload cut short inside its header
    with pytest.raises(PermanentError) as failure:
        invoke("inspect_image", {"source": listing["source"], "hdu": 5})
    cause = json.dumps({"errorType": "PermanentError", "errorMessage": json.dumps(failure.value.record)})

    quarantined = invoke("quarantine", {"execution_id": f"arn:aws:states:us-east-1:1:execution:ingest:{uuid.uuid4()}",
                                        "state": {"source": listing["source"], "hdu": 5,
                                                  "caught": {"InspectImage": {"Error": "PermanentError", "Cause": cause}}}})

    assert (quarantined["image_id"], quarantined["reason"]) == (make_image_id(uri, etag, 5), "truncated")
    [row] = images_rows(aws)
    assert (row["image_id"], row["status"], row["error_reason"]) == (quarantined["image_id"], "failed", "truncated")
