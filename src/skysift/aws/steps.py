"""What each state of the workflows does, as plain functions the handlers call.

The state machine passes small JSON documents between these steps (S3 pointers and
counts, never catalogs). Each step takes a declared event model and returns a declared
result model (the handlers, :mod:`skysift.aws.handlers`, validate the event at the edge
with the Powertools parser and serialise the result)::

    Inspect     IngestEvent        -> IngestState {source: {bucket, key}, image: {info, route, summary_uri}, hdus}
                (the event's ``hdu``, else the first image HDU; ``hdus`` lists the file's images, and the
                state machine runs the steps below once per image, in an inline Map)
    DetectSmall IngestState        -> DetectResult {status, n_sources, summary_uri, sources_uri}
    DetectLarge the same, as a Batch job (:mod:`skysift.aws.worker`), summary at image.summary_uri
    Alerts      IngestState        -> AlertsResult {n_alerts, n_published}      (SNS, then alerts rows)
    Record      IngestState        -> RecordResult {image_id, status, route, n_sources} (images row: the commit)
    Quarantine  QuarantineRequest  -> QuarantineResult {image_id, reason, message, record_uri}
    Report      ReportRequest      -> ReportResult {report_uri, files, total, succeeded, failed, reasons} (per image)

An event that does not match its model is :class:`~skysift.errors.MalformedEvent` (permanent).
Steps raise the typed errors of :mod:`skysift.errors` and whatever the AWS calls raise; the
handlers turn every one into one of the two errors the state machines know
(:mod:`skysift.aws.faults`): ``TransientError`` (retried) or ``PermanentError`` (caught, to
Quarantine), whose message is the failure record Quarantine reads back.

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
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote_plus, urlparse

import boto3
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from skysift import errors
from skysift.alerts.delivery import prepare_alerts
from skysift.aws import faults
from skysift.aws.catalog import S3GlueCatalog, put_unless_success
from skysift.aws.config import AwsConfig, settings_from_env
from skysift.aws.publisher import SnsPublisher, idempotency_config
from skysift.catalog.records import ImageRecord, ImageStatus, Route
from skysift.catalog.schema import ALERTS_SCHEMA
from skysift.errors import MalformedEvent, SkysiftError
from skysift.io.fits import ImageInfo, image_hdus, inspect_image, make_image_id
from skysift.pipeline.image import image_record, process_image, top_sources
from skysift.pipeline.router import choose_route
from skysift.settings import Settings

__all__ = [
    "EXIT_TRANSIENT",
    "REPORT_LISTING_THREADS",
    "AlertsResult",
    "CaughtError",
    "Context",
    "DetectResult",
    "FailedState",
    "ImageState",
    "IngestEvent",
    "IngestState",
    "QuarantineRequest",
    "QuarantineResult",
    "RecordResult",
    "ReportRequest",
    "ReportResult",
    "SourceObject",
    "StateModel",
    "SurveyState",
    "alerts_step",
    "caught_failure",
    "choose_route",
    "context_from_env",
    "detect_step",
    "get_json",
    "inspect_step",
    "list_images",
    "outcome_uri",
    "parse_event",
    "put_json",
    "quarantine_step",
    "read_header",
    "record_step",
    "report_step",
    "send_alerts",
    "survey_items",
]

log = logging.getLogger(__name__)


# -- event and result models ------------------------------------------------------------------
class StateModel(BaseModel):
    """A part of the state a step reads: the state carries more (earlier results), which it ignores."""

    model_config = ConfigDict(extra="ignore")


class SourceObject(BaseModel):
    """The raw object an IngestImage execution is about."""

    model_config = ConfigDict(frozen=True)

    bucket: str = Field(min_length=1)
    key: str = Field(min_length=1)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def _source_from_eventbridge(data: Any) -> Any:
    """An EventBridge S3 'Object Created' event as ``{"source": {bucket, key}, ...}`` (its own
    ``source``, "aws.s3", replaced); anything else as it is."""
    if not (isinstance(data, dict) and "detail-type" in data):
        return data
    from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel

    try:
        parsed = S3EventNotificationEventBridgeModel.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"not an S3 'Object Created' event: {exc.errors(include_url=False)[0]['msg']} "
                         f"at {'.'.join(map(str, exc.errors()[0]['loc']))}") from exc
    return {**data, "source": {"bucket": parsed.detail.bucket.name, "key": parsed.detail.object.key}}


class IngestEvent(StateModel):
    """Inspect's input: the EventBridge S3 'Object Created' event, or ``{"source": {bucket, key}}``
    (SurveyIngest's items, the Batch worker); ``{"source", "hdu"}`` for one image of a file (the
    IngestImage Map's items: None the first image HDU, else its index, as :func:`image_hdus` lists them).

    Without an ``hdu`` key Inspect lists the file's images too (:attr:`IngestState.hdus`).
    """

    source: SourceObject
    hdu: int | None = None

    @property
    def lists_images(self) -> bool:
        return "hdu" not in self.model_fields_set

    @model_validator(mode="before")
    @classmethod
    def _from_eventbridge(cls, data: Any) -> Any:
        return _source_from_eventbridge(data)


class ImageState(StateModel):
    """``$.image`` in the IngestImage state: what Inspect learnt, plus the route."""

    info: ImageInfo
    route: Route
    summary_uri: str


class AlertsResult(BaseModel):
    n_alerts: int
    n_published: int


class IngestState(StateModel):
    """The IngestImage state after Inspect: Inspect's result, the input of DetectSmall, Alerts and
    Record (Record's state carries ``detect`` too, ignored, and ``alerts``: their count)."""

    source: SourceObject
    image: ImageState
    alerts: AlertsResult | None = Field(default=None, exclude=True)  # read by Record, never passed on
    #: The file's images (``hdu`` of each, :func:`image_hdus`): IngestImage's Map runs one chain per item.
    hdus: list[int | None] = Field(default_factory=lambda: [None])


class DetectResult(BaseModel):
    status: str
    n_sources: int
    summary_uri: str
    sources_uri: str | None = None


class RecordResult(BaseModel):
    image_id: str
    status: ImageStatus
    route: Route
    n_sources: int
    n_alerts: int = 0


class CaughtError(BaseModel):
    """What a Catch puts at ``$.caught.<State>``: the error name and its cause."""

    model_config = ConfigDict(populate_by_name=True)

    error: str = Field("States.Runtime", alias="Error")
    cause: str = Field("", alias="Cause")


class FailedState(StateModel):
    """The IngestImage state a Catch sent to Quarantine: the execution's input (an S3 event or
    ``{"source"}``), what Inspect learnt if it got that far, and ``caught.<State>``.

    ``source`` is None when the input named no object (a malformed event is quarantined too).
    """

    caught: dict[str, CaughtError] = Field(default_factory=dict)
    source: SourceObject | None = None
    image: ImageState | None = None
    hdu: int | None = None  # the image of the file a Map iteration is about, when Inspect did not describe it

    @model_validator(mode="before")
    @classmethod
    def _lenient_source(cls, data: Any) -> Any:
        try:
            data = _source_from_eventbridge(data)
        except ValueError:
            return {**data, "source": None}
        if isinstance(data, dict) and data.get("source") is not None:
            try:
                SourceObject.model_validate(data["source"])
            except ValidationError:
                return {**data, "source": None}
        return data


class QuarantineRequest(BaseModel):
    """Quarantine's input: ``{"execution_id": $$.Execution.Id, "state": $}``."""

    execution_id: str
    state: FailedState


class QuarantineResult(BaseModel):
    image_id: str
    reason: str
    message: str
    record_uri: str


class SurveyState(StateModel):
    """SurveyIngest's state at Report: its input (a prefix of a bucket, or a manifest object) and the Map's outcome."""

    bucket: str | None = None
    prefix: str = ""
    manifest: SourceObject | None = None
    map: dict[str, Any] | None = None
    map_error: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _names_objects(self) -> SurveyState:
        if self.manifest is None and not self.bucket:
            raise ValueError("a survey names a bucket (and prefix) or a manifest {bucket, key}")
        return self


class ReportRequest(BaseModel):
    """Report's input: ``{"execution_id": $$.Execution.Id, "state": $}``."""

    execution_id: str
    state: SurveyState


class ReportResult(BaseModel):
    report_uri: str
    files: int
    total: int
    succeeded: int
    failed: int
    reasons: dict[str, int]


def parse_event(event: Any, model: type[BaseModel]) -> Any:
    """``event`` validated against ``model`` (Powertools parser); :class:`MalformedEvent` if it does not fit."""
    from aws_lambda_powertools.utilities.parser import parse

    try:
        return parse(event=event, model=model)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(event)'}: {e['msg']}"
                             for e in exc.errors(include_url=False)[:5])
        raise MalformedEvent(f"not a {model.__name__}: {problems}") from exc


# -- small helpers ---------------------------------------------------------------------------


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


def context_from_env(function: str = "") -> Context:
    """The Context of one function in the current environment, built once (per cold start) and reused.

    Keyed by ``function`` as well: on Lambda each function has a process of its own; where several
    share one (the emulation, tests), each still gets its own clients and its own idempotency
    configuration (the invocation's deadline is registered on it).
    """
    keys = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(("SKYSIFT_", "AWS_ENDPOINT_URL"))))
    return _context_for(function, keys)


@functools.lru_cache(maxsize=16)
def _context_for(function: str, environment: tuple[tuple[str, str], ...]) -> Context:
    env = dict(environment)
    return Context(AwsConfig.from_env(env), settings_from_env(env))


# -- the steps -------------------------------------------------------------------------------
def read_header(source: SourceObject, ctx: Context, hdu: int | None = None) -> tuple[SourceObject, ImageInfo]:
    """The object (its key decoded if it had to be) and its header's description (a ranged read)."""
    try:
        return source, inspect_image(source.uri, hdu, survey_default=ctx.settings.survey,
                                     limits=ctx.settings.limits.header_limits())
    except errors.SourceNotFound:
        # S3 notifications carry URL-encoded keys ("red flower.fits" arrives as "red+flower.fits").
        decoded = SourceObject(bucket=source.bucket, key=unquote_plus(source.key))
        if decoded == source:
            raise
        return decoded, inspect_image(decoded.uri, hdu, survey_default=ctx.settings.survey,
                                      limits=ctx.settings.limits.header_limits())


def inspect_step(event: IngestEvent, ctx: Context) -> IngestState:
    """Read the header of the image ``event.hdu`` (a ranged read) and choose the route; for an event
    without ``hdu``, list the file's images as well; nothing is written."""
    source, info = read_header(event.source, ctx, event.hdu)
    # small (Lambda), large (Batch) or index_only (a solar image), from the header: the one router
    route = choose_route(info, ctx.settings, small_image_max_pixels=ctx.config.small_image_max_pixels)
    log.info("inspected %s: %dx%d %s -> %s", source.uri, info.nx, info.ny, info.wcs_kind, route)
    hdus = list_images(source, ctx) if event.lists_images else [event.hdu]
    return IngestState(source=source, image=ImageState(info=info, route=route, summary_uri=ctx.summary_uri(info.image_id)),
                       hdus=hdus)


def list_images(source: SourceObject, ctx: Context) -> list[int | None]:
    """The file's images, from its headers (at most ``limits.max_hdus`` HDUs), as ``skysift run``
    lists them (:func:`~skysift.pipeline.survey.images_to_measure`): None the first image HDU, the
    index of each later one. Damage after the first image is one more item, whose Inspect fails and
    is quarantined as that image's failure. A transient error is raised (Inspect is retried); any
    other leaves the first image alone (its own reading succeeded)."""
    try:
        return [h if h is None else int(h) for h in image_hdus(source.uri, limits=ctx.settings.limits.header_limits())]
    except Exception as exc:
        if faults.is_transient(exc):
            raise
        log.warning("%s: image HDUs not listed (%s); measuring the first", source.uri, exc)
        return [None]


def detect_step(req: IngestState, ctx: Context) -> DetectResult:
    """Measure one image and write its ``sources`` rows; the summary goes to ``image.summary_uri``.

    Raises the image's typed error when it cannot be measured (the Batch worker then
    writes the failure to the summary, as its exit code is all Step Functions sees).
    """
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
    return DetectResult(status=record.status, n_sources=n_sources, summary_uri=req.image.summary_uri,
                        sources_uri=sources_uri)


def _summary(ctx: Context, image: ImageState) -> dict:
    summary = get_json(ctx.s3, image.summary_uri)
    if summary is None or summary.get("status") == ImageStatus.FAILED:
        raise errors.SourceNotFound("no detection summary: the detect step did not finish", uri=image.summary_uri)
    return summary


def outcome_uri(ctx: Context, image_id: str) -> str:
    return f"s3://{ctx.config.catalog_bucket}/runs/{image_id}/outcome.json"


def alerts_step(req: IngestState, ctx: Context) -> AlertsResult:
    """Evaluate the alert rules, send each alert once, then store the ``alerts`` rows.

    Sent first, stored after: the ``alerts`` table lists what was sent. A failure in between
    is retried; the retry's publish sends nothing again (each alert_id is remembered) and
    then stores the rows.
    """
    return send_alerts(ImageRecord.from_json(_summary(ctx, req.image)["image_row"]), ctx)


def send_alerts(record: ImageRecord, ctx: Context, *, sent_before: list[dict] | None = None) -> AlertsResult:
    """Evaluate the rules for a recorded image, publish (once per alert_id), then store the
    ``alerts`` rows: those raised now, plus ``sent_before`` (rows stored earlier) that are not
    raised again, as what was sent cannot be unsent."""
    alerts = prepare_alerts(record, ctx.store.read_sources(record), ctx.store, ctx.settings.alerts,
                            ctx.settings.background, objects=ctx.settings.objects)
    sent = ctx.publisher().publish(alerts)
    raised = {a["alert_id"] for a in alerts}
    kept = [a for a in sent_before or [] if a["alert_id"] not in raised]
    rows = [{k: a[k] for k in ALERTS_SCHEMA.names} for a in alerts] + [{k: a.get(k) for k in ALERTS_SCHEMA.names} for a in kept]
    ctx.store.write_alerts(record, pa.Table.from_pylist(rows, schema=ALERTS_SCHEMA))
    return AlertsResult(n_alerts=len(rows), n_published=len(sent))


def record_step(state: IngestState, ctx: Context) -> RecordResult:
    """Write the ``images`` row, the image's commit point: from the detection summary, or
    index-only for non-celestial images; then the outcome the survey report reads."""
    source, image = state.source, state.image
    if image.route == Route.INDEX_ONLY:
        result = process_image(source.uri, ctx.settings, hdu=image.info.hdu, route=Route.INDEX_ONLY)
        if result.error is not None:
            raise result.error
        record = result.record
    else:
        record = ImageRecord.from_json(_summary(ctx, image)["image_row"]).replace(route=image.route)
    ctx.store.write_image_record(record)
    outcome = RecordResult(image_id=record.image_id, status=record.status, route=record.route,
                           n_sources=int(record.n_sources or 0),
                           n_alerts=state.alerts.n_alerts if state.alerts else 0)
    put_json(ctx.s3, outcome_uri(ctx, record.image_id), {**outcome.model_dump(), "uri": source.uri})
    return outcome


#: Errors of Lambda and Batch themselves (the service, not our code) left after the state's retries.
_SERVICE_ERRORS = ("Lambda.", "Batch.")
#: A Batch job's exit code for "retry me" (EX_TEMPFAIL), as :mod:`skysift.aws.worker` uses it.
EXIT_TRANSIENT = 75


def caught_failure(state: FailedState, ctx: Context) -> tuple[str, dict[str, Any]]:
    """The state that failed and its failure record, from ``$.caught.<State> = {Error, Cause}``.

    A failure the handlers raised carries its record in the Cause; a Batch job's is in its
    summary; anything else (a timeout, a crash, the service refusing) is described from its
    error name.
    """
    caught = state.caught or {"unknown": CaughtError(error="States.Runtime", cause="no caught error in the state")}
    where, error = next(iter(caught.items()))
    name, cause = error.error or "States.Runtime", error.cause or ""
    record = faults.record_from_cause(cause)
    if record is not None:
        return where, record
    try:
        details = json.loads(cause)
    except (TypeError, ValueError):
        details = {}
    details = details if isinstance(details, dict) else {}
    if name == "States.TaskFailed" and state.image is not None:  # a Batch job: its exit code or its summary says why
        transient = (details.get("Container") or {}).get("ExitCode") == EXIT_TRANSIENT
        summary = {} if transient else get_json(ctx.s3, state.image.summary_uri) or {}
        if summary.get("status") == ImageStatus.FAILED:
            return where, summary["error"]
        return where, {"reason": faults.AWS_TRANSIENT if transient else "batch_failed", "error_type": name,
                       "message": f"the Batch job failed: {details.get('StatusReason') or cause[:300]}",
                       "transient": transient}
    reason = "timeout" if name in ("States.Timeout", "Sandbox.Timedout") else "internal_error"
    transient = name.startswith(_SERVICE_ERRORS)
    return where, {"reason": faults.AWS_TRANSIENT if transient else reason, "error_type": name,
                   "message": f"{name}: {details.get('errorMessage') or cause[:500]}", "transient": transient}


def _header_or_none(source: SourceObject, ctx: Context, hdu: int | None = None) -> ImageInfo | None:
    """The header of an object Inspect did not describe (it failed), if it can be read now.

    The ``failed`` images row then goes to the image's own partition and key, where another
    execution's success writes its row: one object per image_id, a success winning over a
    failure in either order (:func:`~skysift.aws.catalog.put_unless_success`). A file whose
    header cannot be read can never succeed, so its row alone goes to the ``unknown`` partition.
    A transient error reading it is raised (Quarantine is retried).
    """
    try:
        return read_header(source, ctx, hdu)[1]
    except Exception as exc:
        if faults.is_transient(exc):
            raise
        return None


def _succeeded(outcome: bytes) -> bool:
    return json.loads(outcome).get("status") in (ImageStatus.OK, ImageStatus.INDEXED)


def quarantine_step(payload: QuarantineRequest, ctx: Context) -> QuarantineResult:
    """Record a failure; never delete, never overwrite a success.

    Always: the execution's own quarantine record. For a permanent failure (the file, the
    configuration or a permission is wrong), also a ``failed`` images row, unless a successful
    row is there: at the image's own key, so that there is one row per image_id (when Inspect
    failed, the header is read again for it, see :func:`_header_or_none`). A transient failure
    whose retries ran out says nothing about the image, so it gets no images row (the raw object
    is kept; ingest it again). The outcome the survey report reads is written unless it already
    records a success.
    """
    state, execution = payload.state, payload.execution_id.rsplit(":", 1)[-1]
    where, record = caught_failure(state, ctx)
    source = state.source
    error = SkysiftError(record.get("message") or "", uri=record.get("uri") or (source.uri if source else None))
    error.reason = record.get("reason") or "internal_error"
    info, route = None, Route.INSPECT
    if state.image is not None:
        info, route = state.image.info, Route(state.image.route)
    elif source is not None and not record.get("transient"):
        info = _header_or_none(source, ctx, state.hdu)
    row = image_record(info, status=ImageStatus.FAILED, route=route, uri=source.uri if source else None, error=error,
                       hdu=state.hdu)
    caught = state.caught.get(where)
    details = {**record, "reason": error.reason, "message": error.message, "uri": error.uri, "state": where,
               "caught": caught.model_dump(by_alias=True) if caught else None, "route": route}
    record_uri = ctx.store.record_failure(row, details, execution)
    images_uri = None if record.get("transient") else ctx.store.write_failed_image_record(row)
    log.warning("quarantined %s after %s: %s (%s)%s", row.uri, where, error.reason, error.message,
                "" if images_uri or record.get("transient") else "; a successful images row is kept")
    outcome = QuarantineResult(image_id=row.image_id, reason=error.reason, message=error.message,
                               record_uri=record_uri)
    bucket, key = _split_s3(outcome_uri(ctx, row.image_id))
    document = {**outcome.model_dump(), "status": ImageStatus.FAILED, "route": route, "uri": row.uri, "state": where}
    put_unless_success(ctx.s3, bucket, key, json.dumps(document, default=str).encode(), _succeeded,
                       ContentType="application/json")
    return outcome


def survey_items(ctx: Context, state: SurveyState) -> list[SourceObject]:
    """The objects a SurveyIngest input names: a manifest's entries, or every object under a prefix."""
    if state.manifest is not None:
        where = state.manifest
        entries = json.loads(ctx.s3.get_object(Bucket=where.bucket, Key=where.key)["Body"].read())
        try:
            return [SourceObject.model_validate(entry) for entry in entries]
        except (ValidationError, TypeError) as exc:
            raise MalformedEvent(f"a manifest is a JSON list of {{bucket, key}}: {exc}", uri=where.uri) from exc
    assert state.bucket is not None  # SurveyState: a bucket or a manifest
    paginator = ctx.s3.get_paginator("list_objects_v2")
    return [SourceObject(bucket=state.bucket, key=obj["Key"])
            for page in paginator.paginate(Bucket=state.bucket, Prefix=state.prefix)
            for obj in page.get("Contents", [])]


#: Files whose images Report lists at once (header reads, mostly waiting on S3).
REPORT_LISTING_THREADS = 8


def report_step(payload: ReportRequest, ctx: Context) -> ReportResult:
    """One report of a SurveyIngest run: every image's outcome (ok, indexed, failed with reason),
    an image per image HDU of each file (a mosaic's CCDs), as IngestImage records them.

    Built from the outcome each IngestImage run leaves at ``runs/{image_id}/outcome.json``
    (the Map Run's ResultWriter files hold the raw per-item results alongside); a file's images
    are listed from its headers as Inspect lists them (:func:`list_images`).
    """
    state = payload.state
    items = survey_items(ctx, state)
    with ThreadPoolExecutor(max_workers=max(1, min(REPORT_LISTING_THREADS, len(items)))) as pool:
        listed = list(pool.map(lambda item: list_images(item, ctx), items))
    outcomes = []
    for item, hdus in zip(items, listed, strict=True):
        head = ctx.s3.head_object(Bucket=item.bucket, Key=item.key)
        for hdu in hdus:
            image_id = make_image_id(item.uri, "etag:" + head["ETag"].strip('"'), hdu)
            outcome = get_json(ctx.s3, outcome_uri(ctx, image_id)) or {"status": "missing"}
            outcomes.append({"key": item.key, "hdu": hdu, "image_id": image_id, **outcome})
    statuses = Counter(o["status"] for o in outcomes)
    reasons = Counter(o.get("reason") or "unknown" for o in outcomes if o["status"] == ImageStatus.FAILED)
    name = payload.execution_id.rsplit(":", 1)[-1]
    report = {
        "execution_id": payload.execution_id, "files": len(items), "total": len(outcomes),
        "succeeded": statuses[ImageStatus.OK] + statuses[ImageStatus.INDEXED], "failed": statuses[ImageStatus.FAILED],
        "missing": statuses["missing"], "statuses": dict(statuses), "reasons": dict(reasons),
        "map_run": state.map, "map_error": state.map_error,
        "images": sorted(outcomes, key=lambda o: (o["key"], o["hdu"] or 0)),
    }
    uri = f"s3://{ctx.config.catalog_bucket}/reports/survey/{name}/report.json"
    put_json(ctx.s3, uri, report)
    return ReportResult(report_uri=uri, **{k: report[k] for k in ("files", "total", "succeeded", "failed", "reasons")})
