"""The sample events in events/ drive the real handlers (as `sam local invoke -e` would)."""

from __future__ import annotations

import json

import pytest
from aws_support import EVENTS, sky_file


def event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def invoke(emulation, function: str, payload: dict) -> dict:
    """Invoke a function through the Lambda API (moto -> the in-process handler)."""
    response = emulation.client("lambda").invoke(FunctionName=emulation.names[function], Payload=json.dumps(payload))
    body = json.loads(response["Payload"].read())
    assert "FunctionError" not in response, body
    return body


@pytest.fixture
def uploaded(emulation, tmp_path):
    """The object the sample events are about, with the same bytes (hence ETag and image_id)."""
    sample = sky_file(tmp_path / "sample.fits")
    emulation.upload(sample, "night-2026-01-01/field-042.fits")
    emulation.wait()
    return emulation


def test_inspect_of_the_sample_upload_event_gives_the_sample_detect_input(uploaded):
    state = invoke(uploaded, "InspectFunction", event("eventbridge-s3-object-created.json"))
    assert state["hdus"] == [None]  # one image: the Map's one item
    # DetectSmall's Payload is {source, image} (statemachine/ingest.asl.json)
    assert {k: state[k] for k in ("source", "image")} == event("detect-small-input.json")


def test_sample_detect_alerts_and_record_inputs_run_the_small_route_by_hand(uploaded):
    detect = invoke(uploaded, "DetectFunction", event("detect-small-input.json"))
    alerts = invoke(uploaded, "AlertsFunction", event("alerts-input.json"))
    record = invoke(uploaded, "RecordFunction", event("record-input.json"))

    assert detect["status"] == "ok" and detect["n_sources"] > 10
    assert alerts["n_alerts"] >= 1 and alerts["n_published"] == 0  # the upload's own run sent them already
    assert record == {"image_id": event("detect-small-input.json")["image"]["info"]["image_id"], "status": "ok",
                      "route": "small", "n_sources": detect["n_sources"],
                      "n_alerts": event("record-input.json")["alerts"]["n_alerts"]}


def test_sample_quarantine_input_records_the_reason(emulation):
    emulation.upload(b"<html>503 Service Unavailable</html>", "night-2026-01-01/error-page.fits")
    emulation.wait()

    result = invoke(emulation, "QuarantineFunction", event("quarantine-input.json"))

    assert result["reason"] == "not_fits"
    assert emulation.get_json(result["record_uri"])["uri"].endswith("night-2026-01-01/error-page.fits")


def test_sample_survey_inputs_start_a_survey_and_report_it(uploaded):
    uploaded.upload(json.dumps([{"bucket": uploaded.raw_bucket, "key": "night-2026-01-01/field-042.fits"}]).encode(),
                    "manifests/night-2026-01-01.json")
    sfn = uploaded.client("stepfunctions")
    runs = [sfn.start_execution(stateMachineArn=uploaded.survey_arn, input=json.dumps(event(name)))["executionArn"]
            for name in ("survey-start.json", "survey-manifest-start.json")]
    uploaded.wait()
    report = invoke(uploaded, "ReportFunction", event("survey-report-input.json"))

    for run in runs:
        described = sfn.describe_execution(executionArn=run)
        assert described["status"] == "SUCCEEDED", described.get("cause")
        assert json.loads(described["output"])["succeeded"] == 1
    assert (report["total"], report["succeeded"], report["failed"]) == (1, 1, 0)


def test_env_json_for_sam_local_sets_every_variable_the_template_gives_the_functions():
    from skysift.aws.template import load_template

    template = load_template(EVENTS.parent / "template.yaml")
    expected = set(template["Globals"]["Function"]["Environment"]["Variables"])
    assert set(event("env.json")["Parameters"]) == expected
