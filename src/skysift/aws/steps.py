"""What each state of the workflows does, as plain functions the handlers call.

The state machine passes small JSON documents between these steps (S3 pointers and
counts, never catalogs)::

    Inspect     event            -> {"source": {bucket, key}, "image": {...ImageInfo, route, summary_uri}}
    DetectSmall {source, image}  -> {"status", "n_sources", "summary_uri"}   (sources rows written)
    DetectLarge the same, as a Batch job (:mod:`skysift.aws.worker`), summary at image.summary_uri
    Alerts      {source, image}  -> {"n_alerts", "n_published"}           (SNS, then alerts rows)
    Record      state            -> {"image_id", "status", "route", "n_sources"}  (images row: the commit)
    Quarantine  {execution_id, state with caught.<State>} -> {"reason", "message", "record_uri"}
    Report      survey state     -> {"report_uri", "total", "succeeded", "failed", "reasons"}

Steps raise the typed errors of :mod:`skysift.errors` and whatever the AWS calls raise; the
handlers (:mod:`skysift.aws.handlers`) turn every one into one of the two errors the state
machines know (:mod:`skysift.aws.faults`): ``TransientError`` (retried) or ``PermanentError``
(caught, to Quarantine), whose message is the failure record Quarantine reads back.

Writes are ordered so that an image has one commit point, its ``images`` row, written last
(by Record); each write replaces an object keyed by image_id, so a retry or a duplicate
execution rewrites the same thing. Quarantine only records: it never deletes, and writes a
``failed`` images row only for a permanent failure and only where no successful row is.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections import Counter
from typing import Any
from urllib.parse import unquote_plus, urlparse

import boto3
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, ValidationError

from skysift import errors
from skysift.alerts.delivery import prepare_alerts
from skysift.aws import faults
from skysift.aws.catalog import S3GlueCatalog, put_unless_success
from skysift.aws.config import AwsConfig, settings_from_env
from skysift.aws.publisher import SnsPublisher, idempotency_config
from skysift.catalog.records import ImageRecord, ImageStatus, Route
from skysift.catalog.schema import ALERTS_SCHEMA
from skysift.errors import SkysiftError
from skysift.io.fits import ImageInfo, inspect_image, make_image_id
from skysift.pipeline.image import image_record, process_image, top_sources
from skysift.pipeline.router import choose_route
from skysift.settings import Settings

log = logging.getLogger(__name__)


class MalformedEvent(SkysiftError):
    """A state input that is neither an S3 'Object Created' event nor {"source": {bucket, key}}."""

    reason = "malformed_event"


class SourceObject(BaseModel):
    model_config = ConfigDict(frozen=True)

    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


class ImageState(BaseModel):
    """``$.image`` in the IngestImage state: what Inspect learnt, plus the route."""

    model_config = ConfigDict(extra="ignore")

    info: ImageInfo
    route: str
    summary_uri: str


class DetectRequest(BaseModel):
    source: SourceObject
    image: ImageState


# -- small helpers ---------------------------------------------------------------------------
def parse_source(event: dict[str, Any]) -> SourceObject:
    """The object an IngestImage input is about: EventBridge S3 event or ``{"source": ...}``."""
    from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel

    try:
        if "detail-type" in event:
            parsed = S3EventNotificationEventBridgeModel.model_validate(event)
            return SourceObject(bucket=parsed.detail.bucket.name, key=parsed.detail.object.key)
        return SourceObject.model_validate(event["source"])
    except (ValidationError, KeyError, TypeError) as exc:
        raise MalformedEvent(f"not an S3 Object Created event nor {{'source': {{bucket, key}}}}: {exc}") from exc


def _split_s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def put_json(s3, uri: str, document: dict) -> None:
    bucket, key = _split_s3(uri)
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(document, default=str).encode(),
                  ContentType="application/json")


def get_json(s3, uri: str) -> dict | None:
    bucket, key = _split_s3(uri)
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except s3.exceptions.NoSuchKey:
        return None


class Context:
    """Clients, configuration and settings, built once per cold start."""

    def __init__(self, config: AwsConfig, settings: Settings, session: boto3.Session | None = None) -> None:
        self.config = config
        self.settings = settings
        self.session = session or boto3.Session()
        self.s3 = self.session.client("s3")
        self.store = S3GlueCatalog(config.catalog_bucket, config.glue_database, session=self.session)
        self.idempotency = idempotency_config()
        self._publisher: SnsPublisher | None = None

    def register_lambda_context(self, lambda_context: Any) -> None:
        """The invocation's deadline bounds the alert claims it makes (they expire if it dies)."""
        self.idempotency.register_lambda_context(lambda_context)

    def publisher(self) -> SnsPublisher:
        """The alert publisher (built once, like the clients)."""
        if not (self.config.alert_topic_arn and self.config.alert_ledger_table):
            raise errors.ConfigError("SKYSIFT_ALERT_TOPIC_ARN and SKYSIFT_ALERT_LEDGER_TABLE must be set")
        if self._publisher is None:
            self._publisher = SnsPublisher(self.config.alert_topic_arn, self.config.alert_ledger_table,
                                           session=self.session, config=self.idempotency)
        return self._publisher

    def summary_uri(self, image_id: str) -> str:
        return f"s3://{self.config.catalog_bucket}/runs/{image_id}/summary.json"


def context_from_env() -> Context:
    """The Context for the current environment, built once (per cold start) and reused."""
    keys = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(("SKYSIFT_", "AWS_ENDPOINT_URL"))))
    return _context_for(keys)


@functools.lru_cache(maxsize=4)
def _context_for(environment: tuple[tuple[str, str], ...]) -> Context:
    env = dict(environment)
    return Context(AwsConfig.from_env(env), settings_from_env(env))


# -- the steps -------------------------------------------------------------------------------
def inspect_step(event: dict[str, Any], ctx: Context) -> dict:
    source = parse_source(event)
    try:
        info = inspect_image(source.uri, survey_default=ctx.settings.survey,
                             limits=ctx.settings.limits.header_limits())
    except errors.SourceNotFound:
        # S3 notifications carry URL-encoded keys ("red flower.fits" arrives as "red+flower.fits").
        decoded = SourceObject(bucket=source.bucket, key=unquote_plus(source.key))
        if decoded == source:
            raise
        source, info = decoded, inspect_image(decoded.uri, survey_default=ctx.settings.survey,
                                                  limits=ctx.settings.limits.header_limits())
    # small (Lambda), large (Batch) or index_only (a solar image), from the header: the one router
    route = choose_route(info, ctx.settings, small_image_max_pixels=ctx.config.small_image_max_pixels)
    log.info("inspected %s: %dx%d %s -> %s", source.uri, info.nx, info.ny, info.wcs_kind, route)
    image = {"info": info.model_dump(mode="json"), "route": route, "summary_uri": ctx.summary_uri(info.image_id)}
    return {"source": source.model_dump(), "image": image}


def detect_step(request: dict[str, Any], ctx: Context) -> dict:
    """Measure one image and write its ``sources`` rows; the summary goes to ``image.summary_uri``.

    Raises the image's typed error when it cannot be measured (the Batch worker then
    writes the failure to the summary, as its exit code is all Step Functions sees).
    """
    req = DetectRequest.model_validate(request)
    result = process_image(req.source.uri, ctx.settings, hdu=req.image.info.hdu, route=req.image.route,
                           workers=ctx.config.workers if req.image.route == Route.LARGE else 1)
    if result.error is not None:
        raise result.error  # an internal_error keeps its cause: a throttled read is retried, not quarantined
    record = result.record
    sources_uri = ctx.store.write_sources(record, result.sources)
    n_sources = int(record.n_sources or (result.sources.num_rows if result.sources is not None else 0))
    put_json(ctx.s3, req.image.summary_uri, {
        "status": record.status, "image_row": record.to_json(), "n_sources": n_sources,
        "sources_uri": sources_uri, "top_sources": top_sources(result.sources),
    })
    return {"status": record.status, "n_sources": n_sources, "summary_uri": req.image.summary_uri,
            "sources_uri": sources_uri}


def _summary(ctx: Context, image: ImageState) -> dict:
    summary = get_json(ctx.s3, image.summary_uri)
    if summary is None or summary.get("status") == ImageStatus.FAILED:
        raise errors.SourceNotFound("no detection summary: the detect step did not finish", uri=image.summary_uri)
    return summary


def outcome_uri(ctx: Context, image_id: str) -> str:
    return f"s3://{ctx.config.catalog_bucket}/runs/{image_id}/outcome.json"


def alerts_step(request: dict[str, Any], ctx: Context) -> dict:
    """Evaluate the alert rules, send each alert once, then store the ``alerts`` rows.

    Sent first, stored after: the ``alerts`` table lists what was sent. A failure in between
    is retried; the retry's publish sends nothing again (each alert_id is remembered) and
    then stores the rows.
    """
    req = DetectRequest.model_validate(request)
    record = ImageRecord.from_json(_summary(ctx, req.image)["image_row"])
    sources = ctx.store.read_sources(record)
    alerts = prepare_alerts(record, sources, ctx.store, ctx.settings.alerts, ctx.settings.background)
    sent = ctx.publisher().publish(alerts)
    ctx.store.write_alerts(record, pa.Table.from_pylist([{k: a[k] for k in ALERTS_SCHEMA.names} for a in alerts],
                                                     schema=ALERTS_SCHEMA))
    return {"n_alerts": len(alerts), "n_published": len(sent)}


def record_step(state: dict[str, Any], ctx: Context) -> dict:
    """Write the ``images`` row, the image's commit point: from the detection summary, or
    index-only for non-celestial images; then the outcome the survey report reads."""
    source = SourceObject.model_validate(state["source"])
    image = ImageState.model_validate(state["image"])
    if image.route == Route.INDEX_ONLY:
        result = process_image(source.uri, ctx.settings, hdu=image.info.hdu, route=Route.INDEX_ONLY)
        if result.error is not None:
            raise result.error
        record = result.record
    else:
        record = ImageRecord.from_json(_summary(ctx, image)["image_row"]).replace(route=image.route)
    ctx.store.write_image_record(record)
    outcome = {"image_id": record.image_id, "status": record.status, "route": record.route,
               "n_sources": int(record.n_sources or 0)}
    put_json(ctx.s3, outcome_uri(ctx, record.image_id), {**outcome, "uri": source.uri})
    return outcome


#: Errors of Lambda and Batch themselves (the service, not our code) left after the state's retries.
_SERVICE_ERRORS = ("Lambda.", "Batch.")
#: A Batch job's exit code for "retry me" (EX_TEMPFAIL), as :mod:`skysift.aws.worker` uses it.
EXIT_TRANSIENT = 75


def caught_failure(state: dict[str, Any], ctx: Context) -> tuple[str, dict[str, Any]]:
    """The state that failed and its failure record, from ``$.caught.<State> = {Error, Cause}``.

    A failure the handlers raised carries its record in the Cause; a Batch job's is in its
    summary; anything else (a timeout, a crash, the service refusing) is described from its
    error name.
    """
    caught = state.get("caught") or {"unknown": {"Error": "States.Runtime", "Cause": "no caught error in the state"}}
    where, error = next(iter(caught.items()))
    name, cause = error.get("Error") or "States.Runtime", error.get("Cause") or ""
    record = faults.record_from_cause(cause)
    if record is not None:
        return where, record
    try:
        details = json.loads(cause)
    except (TypeError, ValueError):
        details = {}
    details = details if isinstance(details, dict) else {}
    if name == "States.TaskFailed" and "image" in state:  # a Batch job: its exit code or its summary says why
        transient = (details.get("Container") or {}).get("ExitCode") == EXIT_TRANSIENT
        summary = {} if transient else get_json(ctx.s3, state["image"]["summary_uri"]) or {}
        if summary.get("status") == ImageStatus.FAILED:
            return where, summary["error"]
        return where, {"reason": faults.AWS_TRANSIENT if transient else "batch_failed", "error_type": name,
                       "message": f"the Batch job failed: {details.get('StatusReason') or cause[:300]}",
                       "transient": transient}
    reason = "timeout" if name in ("States.Timeout", "Sandbox.Timedout") else "internal_error"
    transient = name.startswith(_SERVICE_ERRORS)
    return where, {"reason": faults.AWS_TRANSIENT if transient else reason, "error_type": name,
                   "message": f"{name}: {details.get('errorMessage') or cause[:500]}", "transient": transient}


def _source_or_none(state: dict[str, Any]) -> SourceObject | None:
    try:
        return parse_source(state)
    except MalformedEvent:
        return None


def _succeeded(outcome: bytes) -> bool:
    return json.loads(outcome).get("status") in (ImageStatus.OK, ImageStatus.INDEXED)


def quarantine_step(payload: dict[str, Any], ctx: Context) -> dict:
    """Record a failure; never delete, never overwrite a success.

    Always: the execution's own quarantine record. For a permanent failure (the file, the
    configuration or a permission is wrong), also a ``failed`` images row, unless a successful
    row is there. A transient failure whose retries ran out says nothing about the image, so it
    gets no images row (the raw object is kept; ingest it again). The outcome the survey report
    reads is written unless it already records a success.
    """
    state, execution = payload["state"], payload["execution_id"].rsplit(":", 1)[-1]
    where, record = caught_failure(state, ctx)
    source = _source_or_none(state)
    error = SkysiftError(record.get("message") or "", uri=record.get("uri") or (source.uri if source else None))
    error.reason = record.get("reason") or "internal_error"
    info, route = None, Route.INSPECT
    if "image" in state:
        image = ImageState.model_validate(state["image"])
        info, route = image.info, Route(image.route)
    row = image_record(info, status=ImageStatus.FAILED, route=route, uri=source.uri if source else None, error=error)
    details = {**record, "reason": error.reason, "message": error.message, "uri": error.uri, "state": where,
               "caught": state.get("caught", {}).get(where), "route": route}
    record_uri = ctx.store.record_failure(row, details, execution)
    images_uri = None if record.get("transient") else ctx.store.write_failed_image_record(row)
    log.warning("quarantined %s after %s: %s (%s)%s", row.uri, where, error.reason, error.message,
                "" if images_uri or record.get("transient") else "; a successful images row is kept")
    outcome = {"image_id": row.image_id, "reason": error.reason, "message": error.message, "record_uri": record_uri}
    bucket, key = _split_s3(outcome_uri(ctx, row.image_id))
    document = {**outcome, "status": ImageStatus.FAILED, "route": route, "uri": row.uri, "state": where}
    put_unless_success(ctx.s3, bucket, key, json.dumps(document, default=str).encode(), _succeeded,
                       ContentType="application/json")
    return outcome


def survey_items(ctx: Context, state: dict[str, Any]) -> list[SourceObject]:
    """The objects a SurveyIngest input names: a manifest's entries, or every object under a prefix."""
    if "manifest" in state:
        where = SourceObject.model_validate(state["manifest"])
        entries = json.loads(ctx.s3.get_object(Bucket=where.bucket, Key=where.key)["Body"].read())
        return [SourceObject.model_validate(entry) for entry in entries]
    paginator = ctx.s3.get_paginator("list_objects_v2")
    return [SourceObject(bucket=state["bucket"], key=obj["Key"])
            for page in paginator.paginate(Bucket=state["bucket"], Prefix=state.get("prefix", ""))
            for obj in page.get("Contents", [])]


def report_step(payload: dict[str, Any], ctx: Context) -> dict:
    """One report of a SurveyIngest run: every image's outcome (ok, indexed, failed with reason).

    Built from the outcome each IngestImage run leaves at ``runs/{image_id}/outcome.json``
    (the Map Run's ResultWriter files hold the raw per-item results alongside).
    """
    state = payload["state"]
    outcomes = []
    for item in survey_items(ctx, state):
        head = ctx.s3.head_object(Bucket=item.bucket, Key=item.key)
        image_id = make_image_id(item.uri, "etag:" + head["ETag"].strip('"'))
        outcome = get_json(ctx.s3, outcome_uri(ctx, image_id)) or {"status": "missing"}
        outcomes.append({"key": item.key, "image_id": image_id, **outcome})
    statuses = Counter(o["status"] for o in outcomes)
    reasons = Counter(o.get("reason") or "unknown" for o in outcomes if o["status"] == ImageStatus.FAILED)
    name = payload["execution_id"].rsplit(":", 1)[-1]
    report = {
        "execution_id": payload["execution_id"], "total": len(outcomes),
        "succeeded": statuses[ImageStatus.OK] + statuses[ImageStatus.INDEXED], "failed": statuses[ImageStatus.FAILED],
        "missing": statuses["missing"], "statuses": dict(statuses), "reasons": dict(reasons),
        "map_run": state.get("map"), "map_error": state.get("map_error"),
        "images": sorted(outcomes, key=lambda o: o["key"]),
    }
    uri = f"s3://{ctx.config.catalog_bucket}/reports/survey/{name}/report.json"
    put_json(ctx.s3, uri, report)
    return {"report_uri": uri, **{k: report[k] for k in ("total", "succeeded", "failed", "reasons")}}
