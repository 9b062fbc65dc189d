"""Command-line entry points of the AWS system (registered by :mod:`skysift.cli.main`).

* ``skysift emulate``: the whole system of template.yaml on moto, in this process;
  optionally ingest a directory of FITS files through it and print what happened.
* ``skysift ingest s3://bucket/prefix`` (or ``--manifest s3://bucket/key``): start SurveyIngest.
* ``skysift alerts subscribe --sqs ARN | --email ADDR [--min-snr N --kind new_source ...]``:
  subscribe to the alert topic with a filter policy on the message attributes.
* ``skysift query --athena "SQL"``: :func:`athena_query` runs the SQL on Athena via awswrangler.

Names come from options, ``SKYSIFT_*`` environment variables, or the outputs of the
CloudFormation stack (``--stack``, default ``skysift-dev``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import click
from botocore.exceptions import ClientError

from skysift.catalog.records import ImageStatus
from skysift.cli import terminal
from skysift.errors import ConfigError
from skysift.io.storage import FITS_SUFFIXES
from skysift.settings import ALERT_RULES

__all__ = [
    "KINDS",
    "allow_topic_to_send",
    "athena_query",
    "athena_query_for",
    "emulate_command",
    "filter_policy",
    "ingest_command",
    "stack_option",
    "stack_output",
    "start_survey",
    "subscribe",
    "subscribe_command",
    "wait_for",
]

#: Alert kinds the rules produce (the ``kind`` message attribute).
KINDS = ALERT_RULES


def stack_output(stack: str, key: str) -> str:
    """One output of the deployed stack (e.g. ``SurveyIngestStateMachineArn``)."""
    try:
        outputs = boto3.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ValidationError":
            raise
        raise ConfigError(f"no CloudFormation stack {stack!r} in this account and region: deploy it "
                          "(sam deploy) or name it with --stack or SKYSIFT_STACK") from exc
    for output in outputs:
        if output["OutputKey"] == key:
            return output["OutputValue"]
    raise ConfigError(f"stack {stack} has no output {key}")


def filter_policy(*, min_snr: float | None = None, kinds: tuple[str, ...] = (), surveys: tuple[str, ...] = (),
                  bands: tuple[str, ...] = (), max_mag: float | None = None,
                  cone: tuple[float, float, float] | None = None, object_ids: tuple[str, ...] = ()) -> dict[str, Any]:
    """An SNS filter policy on the alert message attributes (empty: every alert).

    ``cone`` (RA, Dec, radius, degrees) selects the sky cells (``sky_cell``, nside 64) that it
    touches, a slightly larger region; ``object_ids`` a watchlist of objects (``object_id``).
    """
    policy: dict[str, Any] = {}
    if cone is not None:
        from skysift.alerts.packets import sky_cell_ranges

        policy["sky_cell"] = [{"numeric": ["=", first]} if first == last else {"numeric": [">=", first, "<=", last]}
                              for first, last in sky_cell_ranges(*cone)]
    if object_ids:
        policy["object_id"] = list(object_ids)
    if kinds:
        unknown = sorted(set(kinds) - set(KINDS))
        if unknown:
            raise ConfigError(f"unknown alert kind(s) {unknown}; choose from {list(KINDS)}")
        policy["kind"] = list(kinds)
    if surveys:
        policy["survey"] = list(surveys)
    if bands:
        policy["band"] = list(bands)
    if min_snr is not None:
        policy["snr"] = [{"numeric": [">=", min_snr]}]
    if max_mag is not None:
        policy["mag"] = [{"numeric": ["<=", max_mag]}]
    return policy


def subscribe(topic_arn: str, *, sqs_arn: str | None = None, email: str | None = None,
              policy: dict[str, Any] | None = None) -> str:
    """Subscribe an SQS queue or an email address to the alert topic; returns the subscription ARN.

    The stack's alert topic is an SNS FIFO topic (each alert delivered once), which delivers to
    SQS queues only: a FIFO queue receives each alert exactly once, a standard queue at least
    once (deduplicate on the ``alert_id`` message attribute). Email needs a standard topic.
    """
    if bool(sqs_arn) == bool(email):
        raise ConfigError("give exactly one of --sqs ARN or --email ADDRESS")
    if email and topic_arn.endswith(".fifo"):
        raise ConfigError("the alert topic is an SNS FIFO topic (each alert exactly once), which delivers to SQS "
                          "queues only: subscribe a queue with --sqs (a .fifo queue receives each alert once) and "
                          "send mail from its consumer")
    attributes = {"FilterPolicy": json.dumps(policy)} if policy else {}
    protocol, endpoint = ("sqs", sqs_arn) if sqs_arn else ("email", email)
    response = boto3.client("sns").subscribe(TopicArn=topic_arn, Protocol=protocol, Endpoint=endpoint,
                                             Attributes=attributes, ReturnSubscriptionArn=True)
    return response["SubscriptionArn"]


def allow_topic_to_send(queue_arn: str, topic_arn: str) -> None:
    """Add to the queue's policy a statement that lets the alert topic (only) send to it."""
    sqs = boto3.client("sqs")
    _, _, _, _, account, name = queue_arn.split(":", 5)
    url = sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
    current = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"]).get("Attributes", {}).get("Policy")
    policy = json.loads(current) if current else {"Version": "2012-10-17", "Statement": []}
    sid = "skysift-alerts-" + topic_arn.rsplit(":", 1)[1]
    if any(statement.get("Sid") == sid for statement in policy["Statement"]):
        return
    policy["Statement"].append({"Sid": sid, "Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"},
                                "Action": "sqs:SendMessage", "Resource": queue_arn,
                                "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}}})
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})


def _split_s3(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ConfigError(f"expected s3://bucket/prefix, got {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def start_survey(state_machine_arn: str, target: str | None = None, manifest: str | None = None) -> str:
    """Start SurveyIngest over ``s3://bucket/prefix`` or a JSON manifest; returns the execution ARN."""
    if manifest:
        bucket, key = _split_s3(manifest)
        document: dict[str, Any] = {"manifest": {"bucket": bucket, "key": key}}
    elif target:
        bucket, prefix = _split_s3(target)
        document = {"bucket": bucket, "prefix": prefix}
    else:
        raise ConfigError("give s3://bucket/prefix or --manifest s3://bucket/key")
    return boto3.client("stepfunctions").start_execution(
        stateMachineArn=state_machine_arn, input=json.dumps(document))["executionArn"]


def wait_for(execution_arn: str, poll_s: float = 5.0) -> dict:
    sfn = boto3.client("stepfunctions")
    while (described := sfn.describe_execution(executionArn=execution_arn))["status"] == "RUNNING":
        time.sleep(poll_s)
    return described


def athena_query(sql: str, *, database: str, workgroup: str):
    """Run SQL on Athena in the stack's workgroup (bytes-scanned limit, result location); a DataFrame."""
    import awswrangler as wr

    return wr.athena.read_sql_query(sql, database=database, workgroup=workgroup, ctas_approach=False)


def athena_query_for(sql: str, *, stack: str = "skysift-dev", database: str | None = None,
                     workgroup: str | None = None):
    """:func:`athena_query` with the database and workgroup from the stack outputs unless given."""
    return athena_query(sql, database=database or stack_output(stack, "GlueDatabaseName"),
                        workgroup=workgroup or stack_output(stack, "AthenaWorkGroupName"))


# -- click commands ----------------------------------------------------------------------------
_ARN = re.compile(r"^arn:aws[a-z-]*:(?P<service>[a-z0-9-]+):[a-z0-9-]+:\d{12}:[A-Za-z0-9_.:-]+$")


def _arn_of(service: str):
    """A click callback accepting only ARNs of ``service`` (checked before any AWS call)."""

    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        match = _ARN.match(value) if value is not None else None
        if value is not None and (match is None or match.group("service") != service):
            raise click.BadParameter(f"{value!r} is not an {service.upper()} ARN "
                                     f"(arn:aws:{service}:REGION:ACCOUNT:NAME)")
        return value

    return check


def _s3_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not re.match(r"^s3://[^/\s]+(/.*)?$", value):
        raise click.BadParameter(f"expected s3://bucket/prefix, got {value!r}")
    return value


def _parameters(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    """``NAME=VALUE`` pairs as a dict (names are checked against template.yaml by the emulation)."""
    parsed = {}
    for text in values:
        name, sep, value = text.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"expected NAME=VALUE, got {text!r}")
        parsed[name.strip()] = value
    return parsed


stack_option = click.option("--stack", default="skysift-dev", show_default=True, envvar="SKYSIFT_STACK",
                            help="CloudFormation stack whose outputs name the resources.")


@click.command("ingest")
@click.argument("target", required=False, callback=_s3_url)
@click.option("--manifest", callback=_s3_url, help="s3://bucket/key of a JSON array of {bucket, key}.")
@click.option("--state-machine", envvar="SKYSIFT_SURVEY_STATE_MACHINE_ARN", help="SurveyIngest ARN (default: stack output).")
@stack_option
@click.option("--wait/--no-wait", default=False, help="Wait for the survey and print its report.")
def ingest_command(target: str | None, manifest: str | None, state_machine: str | None, stack: str, wait: bool) -> None:
    """Ingest every FITS object under s3://BUCKET/PREFIX (or a manifest) through SurveyIngest on AWS."""
    if bool(target) == bool(manifest):
        raise click.UsageError("give exactly one of s3://BUCKET/PREFIX or --manifest s3://BUCKET/KEY")
    arn = state_machine or stack_output(stack, "SurveyIngestStateMachineArn")
    execution = start_survey(arn, target, manifest)
    click.echo(execution)
    if wait:
        described = wait_for(execution)
        click.echo(json.dumps({"status": described["status"], **json.loads(described.get("output") or "{}"),
                               **({"error": described.get("error")} if described["status"] != "SUCCEEDED" else {})}, indent=2))
        if described["status"] != "SUCCEEDED":
            raise SystemExit(1)


@click.command("subscribe")
@click.option("--sqs", "sqs_arn", callback=_arn_of("sqs"), help="ARN of an SQS queue.")
@click.option("--allow/--no-allow", default=True, show_default=True,
              help="Add a statement to the queue's policy that lets the alert topic send to it.")
@click.option("--email", help="An email address (confirmed by the link SNS sends); standard topics only, not the stack's FIFO topic.")
@click.option("--min-snr", type=float, help="Only alerts with SNR at least this.")
@click.option("--max-mag", type=float, help="Only alerts brighter than this AB magnitude.")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(KINDS), help="Only these rules (repeatable).")
@click.option("--survey", "surveys", multiple=True, help="Only these surveys (repeatable).")
@click.option("--band", "bands", multiple=True, help="Only these bands (repeatable).")
@click.option("--cone", type=(float, float, float), metavar="RA DEC RADIUS",
              help="Only alerts in the sky cells (HEALPix nside 64) this cone touches, degrees.")
@click.option("--object", "object_ids", multiple=True, help="Only alerts of these objects (object_id, repeatable): a watchlist.")
@click.option("--topic-arn", envvar="SKYSIFT_ALERT_TOPIC_ARN", callback=_arn_of("sns"), help="Alert topic (default: stack output).")
@stack_option
def subscribe_command(sqs_arn, allow, email, min_snr, max_mag, kinds, surveys, bands, cone, object_ids, topic_arn,
                      stack) -> None:
    """Subscribe to alerts, filtered on their message attributes."""
    if bool(sqs_arn) == bool(email):
        raise click.UsageError("give exactly one of --sqs ARN or --email ADDRESS")
    topic = topic_arn or stack_output(stack, "AlertTopicArn")
    policy = filter_policy(min_snr=min_snr, kinds=kinds, surveys=surveys, bands=bands, max_mag=max_mag, cone=cone,
                           object_ids=object_ids)
    if sqs_arn and allow:
        allow_topic_to_send(sqs_arn, topic)
    click.echo(subscribe(topic, sqs_arn=sqs_arn, email=email, policy=policy))
    if policy:
        click.echo(f"filter policy: {json.dumps(policy)}")


@click.command("emulate")
@click.option("--upload", "upload_dir", type=click.Path(exists=True, file_okay=False),
              help="Upload these FITS files to the raw bucket and report what the system did.")
@click.option("--survey", "survey_dir", type=click.Path(exists=True, file_okay=False),
              help="Upload these FITS files under survey/ and run SurveyIngest over them.")
@click.option("--param", "parameters", multiple=True, metavar="NAME=VALUE", callback=_parameters,
              help="Template parameter of template.yaml (repeatable).")
@click.option("--serve/--no-serve", default=False, help="Keep the emulation up (Ctrl-C to stop) for aws --endpoint-url.")
@click.option("--root", type=click.Path(exists=True, file_okay=False), help="Checkout with template.yaml (default: cwd).")
@click.option("--stack", "stack_name", default="skysift-emu", show_default=True,
              help="Name of the CloudFormation stack the emulation registers (for --stack of the other commands).")
@click.option("--log-file", type=click.Path(dir_okay=False), default="skysift-emulate.log", show_default=True,
              help="Where the functions' JSON logs and metrics go (with -v: to stderr instead).")
@click.option("-v", "--verbose", is_flag=True, help="The functions' logs and metrics on stderr.")
def emulate_command(upload_dir: str | None, survey_dir: str | None, parameters: dict[str, str], serve: bool,
                    root: str | None, stack_name: str, log_file: str, verbose: bool) -> None:
    """Run the AWS system of template.yaml on moto in this process (no AWS account, no Docker).

    Prints one table of what happened to each upload; exits 1 when any image failed.
    """
    out = terminal.console(file=sys.stdout)  # bound before the functions' output is redirected
    with _function_output(None if verbose else Path(log_file)):
        from skysift.aws.emulation.emulate import Emulation

        with Emulation(root, parameters=parameters) as aws:
            aws.publish_stack(stack_name)
            out.print(f"emulation up: stack {stack_name}, moto at {aws.server.url}"
                      + ("" if verbose else f"; the functions' logs in {log_file}"))
            outcomes = []
            if upload_dir:
                for path in _fits_files(upload_dir):
                    aws.upload(path, f"uploads/{path.name}")
                outcomes = [_outcome(e) for e in aws.wait(timeout_s=3600)]
                out.print(_outcome_table(outcomes))
            if survey_dir:
                outcomes = _run_survey(aws, survey_dir, out)
            if serve:
                _serve(aws, stack_name, out)
    if any(o.status == ImageStatus.FAILED for o in outcomes):
        raise SystemExit(terminal.EXIT_FAILURE)  # as `skysift run`: 1 when any image failed


def _fits_files(directory: str) -> list[Path]:
    return sorted(p for p in Path(directory).iterdir() if p.name.lower().endswith(FITS_SUFFIXES))


@contextmanager
def _function_output(log_path: Path | None) -> Iterator[None]:
    """The functions' output (Powertools JSON logs on stdout, EMF metrics, moto's warnings) into
    ``log_path``, as CloudWatch Logs would hold them; left alone (stderr) when None."""
    from skysift.aws.handlers import log_stream

    if log_path is None:
        with contextlib.redirect_stdout(sys.stderr), log_stream(sys.stderr):
            yield
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log_file, contextlib.redirect_stdout(log_file), log_stream(log_file):
        handler = logging.StreamHandler(log_file)
        root = logging.getLogger()
        saved = root.handlers[:]
        root.handlers = [handler]
        try:
            yield
        finally:
            root.handlers = saved


@dataclass(frozen=True)
class _Outcome:
    """One IngestImage execution as the summary shows it."""

    image: str
    status: str
    route: str = ""
    n_sources: int | None = None
    n_alerts: int | None = None
    reason: str = ""


def _outcome(execution: dict) -> _Outcome:
    given = json.loads(execution["input"])  # an EventBridge S3 event, or {"source": {...}}
    key = given.get("detail", {}).get("object", {}).get("key") or given.get("source", {}).get("key") or "?"
    if execution["status"] != "SUCCEEDED":
        cause = (execution.get("cause") or "").splitlines()[0][:200] if execution.get("cause") else ""
        return _Outcome(key, "failed", reason=f"{execution.get('error') or execution['status']}: {cause}".rstrip(": "))
    output = json.loads(execution.get("output") or "{}")
    return _Outcome(key, output.get("status", "ok"), output.get("route", ""), output.get("n_sources"),
                    output.get("n_alerts"))


def _outcome_table(outcomes: list[_Outcome]):
    from rich.table import Table

    table = Table("image", "route", "status", "sources", "alerts", "reason", title=f"{len(outcomes)} upload(s)")
    for o in outcomes:
        table.add_row(o.image, o.route, o.status, "" if o.n_sources is None else str(o.n_sources),
                      "" if o.n_alerts is None else str(o.n_alerts), o.reason)
    return table


def _run_survey(aws, survey_dir: str, out) -> list[_Outcome]:
    rule = "IngestImageStateMachineFitsUploaded"  # bulk load without per-upload ingestion
    aws.client("events").disable_rule(Name=rule)
    for path in _fits_files(survey_dir):
        aws.client("s3").put_object(Bucket=aws.raw_bucket, Key=f"survey/{path.name}", Body=path.read_bytes())
    aws.client("events").enable_rule(Name=rule)
    survey = aws.start_survey(prefix="survey/")
    outcomes = [_outcome(e) for e in aws.wait(timeout_s=3600)]
    described = aws.client("stepfunctions").describe_execution(executionArn=survey)
    report = json.loads(described.get("output") or "{}")
    out.print(_outcome_table(outcomes))
    out.print(f"SurveyIngest {described['status'].lower()}: {report.get('succeeded', 0)} of {report.get('total', 0)} "
              f"images catalogued, {report.get('failed', 0)} failed {report.get('reasons') or ''}".rstrip())
    return outcomes


def _serve(aws, stack_name: str, out) -> None:
    """Stay up for other processes: print how to reach the emulation, as the stack outputs would."""
    out.print("to use it from another shell (any AWS CLI or SDK; skysift commands find the stack):")
    out.print(f"  export AWS_ENDPOINT_URL={aws.server.url} AWS_ACCESS_KEY_ID=testing "
              f"AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION={aws.region_name} SKYSIFT_STACK={stack_name}", soft_wrap=True)
    for key, value in aws.stack_outputs().items():
        out.print(f"  {key:32} {value}", soft_wrap=True)
    out.print(f"  e.g. aws s3 cp FILE.fits s3://{aws.raw_bucket}/uploads/  |  skysift ingest s3://{aws.raw_bucket}/uploads/ --wait")
    out.print("serving; Ctrl-C to stop")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
