"""The AWS commands (skysift ingest / alerts subscribe / query --athena / emulate) against the emulation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

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


def _emulate(*args: str, cwd: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.Popen([sys.executable, "-m", "skysift.cli.main", "emulate", "--root", str(ROOT), *args],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_emulate_prints_one_summary_table_and_keeps_the_functions_logs_in_a_file(tmp_path):
    folder = tmp_path / "night"
    folder.mkdir()
    sky_file(folder / "a.fits", size=128, n_stars=15)
    (folder / "b.fits").write_bytes(b"not fits")

    process = _emulate("--upload", str(folder), "--param", "Stage=dev", cwd=tmp_path)
    stdout, stderr = process.communicate(timeout=600)  # read through a pipe, as a log collector would

    assert process.returncode == 1, stderr[-3000:]  # as `skysift run`: an image failed
    rows = {line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:-1]]
            for line in stdout.splitlines() if line.count("│") == 7 and "uploads/" in line}
    assert rows["uploads/a.fits"][:2] == ["small", "ok"] and int(rows["uploads/a.fits"][2]) > 5
    assert rows["uploads/a.fits"][3].isdigit()  # alerts raised, counted
    assert rows["uploads/b.fits"][1] == "failed" and rows["uploads/b.fits"][4].startswith("not_fits")
    assert '"level"' not in stdout and "{'" not in stdout and "WARNING" not in stdout  # no log line, dict repr, moto noise
    assert len(stdout.splitlines()) < 15 and len(stderr.splitlines()) < 5, stderr
    logged = (tmp_path / "skysift-emulate.log").read_text()
    assert '"ImagesInspected"' in logged and '"level":"INFO"' in logged  # the functions' logs and metrics


def test_emulate_serve_prints_how_to_reach_it_and_stack_lookups_find_it(tmp_path):
    process = _emulate("--serve", "--stack", "skysift-emu", cwd=tmp_path)
    try:
        lines = []
        while not lines or "serving" not in lines[-1]:
            line = process.stdout.readline()
            assert line, process.stderr.read()[-3000:]
            lines.append(line)
        text = "".join(lines)
        exports = dict(item.split("=", 1) for item in text.split("export ", 1)[1].split("\n", 1)[0].split())
        assert exports["AWS_ACCESS_KEY_ID"] == "testing" and exports["SKYSIFT_STACK"] == "skysift-emu"
        assert "arn:aws:states:" in text and "AlertTopicArn" in text
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, **exports}
        lookup = subprocess.run([sys.executable, "-c", "from skysift.cli.aws import stack_output; "
                                 "print(stack_output('skysift-emu', 'SurveyIngestStateMachineArn'))"],
                                capture_output=True, text=True, env=env, timeout=120, check=False)
        assert lookup.returncode == 0 and lookup.stdout.startswith("arn:aws:states:"), lookup.stderr
        assert lookup.stdout.strip() in text
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
    assert process.returncode == 0


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
