"""The AWS commands (skysift ingest / alerts subscribe / query --athena / emulate) against the emulation."""

from __future__ import annotations

import json

import pytest
import requests
from aws_support import ROOT, sky_file
from click.testing import CliRunner

from skysift.cli import aws as cli
from skysift.errors import ConfigError


def test_filter_policy_is_built_from_the_subscribe_options():
    assert cli.filter_policy() == {}
    assert cli.filter_policy(min_snr=50, kinds=("new_source",), surveys=("ztf",), bands=("r", "g")) == {
        "kind": ["new_source"], "survey": ["ztf"], "band": ["r", "g"], "snr": [{"numeric": [">=", 50]}]}
    with pytest.raises(ConfigError, match="unknown alert kind"):
        cli.filter_policy(kinds=("supernova",))


def test_alerts_subscribe_creates_a_filtered_subscription_that_receives_matching_alerts(emulation, sky):
    sqs = emulation.client("sqs")
    url = sqs.create_queue(QueueName="mine")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    result = CliRunner().invoke(cli.subscribe_command, ["--sqs", arn, "--min-snr", "250", "--kind", "high_snr",
                                                        "--topic-arn", emulation.topic_arn])
    assert result.exit_code == 0, result.output
    subscription = result.output.splitlines()[0]
    attributes = emulation.client("sns").get_subscription_attributes(SubscriptionArn=subscription)["Attributes"]
    assert json.loads(attributes["FilterPolicy"]) == {"kind": ["high_snr"], "snr": [{"numeric": [">=", 250]}]}
    queue_policy = json.loads(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"]["Policy"])
    [statement] = queue_policy["Statement"]
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": emulation.topic_arn}}

    emulation.upload(sky, "night-2026-01-01/field-042.fits")
    emulation.wait()
    received = [json.loads(m["Message"]) for m in emulation.receive(url)]
    assert received and all(m["snr"] >= 250 and m["rule"] == "high_snr" for m in received)


def test_subscribe_needs_exactly_one_endpoint():
    with pytest.raises(ConfigError, match="exactly one"):
        cli.subscribe("arn:aws:sns:us-east-1:123456789012:t", sqs_arn=None, email=None)


def test_email_cannot_subscribe_to_the_fifo_alert_topic_and_says_what_to_do():
    with pytest.raises(ConfigError, match=r"FIFO topic .* SQS queues only: subscribe a queue with --sqs"):
        cli.subscribe("arn:aws:sns:us-east-1:123456789012:skysift-dev-alerts.fifo", email="me@example.org")


def test_ingest_command_runs_survey_ingest_over_a_prefix_and_prints_the_report(emulation, tmp_path):
    emulation.client("events").disable_rule(Name="IngestImageStateMachineFitsUploaded")
    for i in range(2):
        emulation.upload(sky_file(tmp_path / f"c{i}.fits", seed=300 + i, size=128, n_stars=15), f"batch/c{i}.fits")
    emulation.upload(b"junk", "batch/junk.fits")

    result = CliRunner().invoke(cli.ingest_command, [f"s3://{emulation.raw_bucket}/batch/", "--wait",
                                                     "--state-machine", emulation.survey_arn])

    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.rindex('{\n  "status"'):])  # handlers' logs share stdout
    assert (report["status"], report["total"], report["succeeded"], report["failed"]) == ("SUCCEEDED", 3, 2, 1)
    assert report["reasons"] == {"not_fits": 1}


def test_athena_query_runs_in_the_stack_workgroup(emulation):
    requests.post(f"{emulation.server.url}/moto-api/static/athena/query-results", timeout=10, json={
        "account_id": "123456789012", "region": "us-east-1",
        "results": [{"rows": [{"Data": [{"VarCharValue": "n"}]}, {"Data": [{"VarCharValue": "3"}]}],
                     "column_info": [{"Name": "n", "Type": "bigint", "CatalogName": "awsdatacatalog", "SchemaName": "",
                                      "TableName": "", "Label": "n", "Precision": 19, "Scale": 0,
                                      "Nullable": "UNKNOWN", "CaseSensitive": False}]}]})
    workgroup = emulation.names["AthenaWorkGroup"]

    frame = cli.athena_query("SELECT count(*) AS n FROM images", database=emulation.database, workgroup=workgroup)

    assert frame["n"].tolist() == [3]
    athena = emulation.client("athena")
    [query_id] = athena.list_query_executions(WorkGroup=workgroup)["QueryExecutionIds"]
    execution = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
    assert execution["Query"] == "SELECT count(*) AS n FROM images"
    assert execution["QueryExecutionContext"]["Database"] == emulation.database


def test_emulate_command_ingests_a_directory_and_reports_each_upload(tmp_path):
    folder = tmp_path / "night"
    folder.mkdir()
    sky_file(folder / "a.fits", size=128, n_stars=15)
    (folder / "b.fits").write_bytes(b"not fits")

    result = CliRunner().invoke(cli.emulate_command, ["--upload", str(folder), "--root", str(ROOT), "--param", "Stage=dev"])

    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith(("SUCCEEDED", "FAILED"))]
    assert len(lines) == 2
    assert any(line.startswith("SUCCEEDED") and "uploads/a.fits" in line for line in lines)
    assert any(line.startswith("FAILED") and "uploads/b.fits" in line and "not_fits" in line for line in lines)


def test_stack_outputs_name_the_resources_when_no_option_does(emulation, monkeypatch):
    cloudformation = emulation.client("cloudformation")
    cloudformation.create_stack(StackName="skysift-dev", TemplateBody=json.dumps({
        "Resources": {"Nothing": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"GlueDatabaseName": {"Value": emulation.database},
                    "AthenaWorkGroupName": {"Value": emulation.names["AthenaWorkGroup"]}}}))
    seen = {}
    monkeypatch.setattr(cli, "athena_query", lambda sql, **names: seen.update(names, sql=sql) or "frame")

    assert cli.athena_query_for("SELECT 1") == "frame"
    assert seen == {"sql": "SELECT 1", "database": "skysift_dev", "workgroup": "skysift-dev"}
    with pytest.raises(ConfigError, match="no output AlertTopicArn"):
        cli.stack_output("skysift-dev", "AlertTopicArn")
