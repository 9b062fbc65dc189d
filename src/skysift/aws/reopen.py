"""An earlier image that arrives late re-opens the alert decisions of the later images it overlaps (AWS).

The ``new_source`` rule of an image compares it with the earlier images of its sky
(:meth:`~skysift.aws.catalog.S3GlueCatalog.earlier_images`), so its decision is only as good as
the images recorded when its Alerts step ran. ``skysift run`` keeps that decision open locally
(:mod:`skysift.pipeline.survey`: the ``alerts-evaluated`` markers); IngestImage does it with two
more states after Record, in each image's iteration::

    Record -> LaterImages (Lambda)  image_id -> {images: [{image_id}, ...]}   (who must be decided again)
           -> ReopenAlerts (Map, one at a time, in order of observation time)
                 ReopenAlert (Lambda)  {image_id} -> AlertsResult           (the Alerts step, for that image)

**Who is decided again** (:func:`later_images_step`). Image X is committed (its ``images`` row and
footprint cells, by Record) before LaterImages runs, so every image whose Alerts step runs from
now on sees X. The images that may have missed it are

* the ``ok`` images already recorded that are observed after X and whose footprint comes within
  ``radius_X + radius_L + HISTORY_MARGIN_DEG`` of X's (the reach ``skysift run`` uses), read
  from the footprint index (a few listings, however large the survey);
* X itself, when an earlier image of its sky was recorded after X's detection summary was
  written (then X's Alerts step may have run before that image was recorded, and that image's
  LaterImages before X was): the footprint object's ``LastModified`` against the summary's.

Between the two, whichever of two overlapping images is recorded second re-opens the
decision the other order could have missed, whatever the interleaving of their executions.

**Sending again is safe** (:func:`reopen_alerts_step`). It is the Alerts step for an image
already recorded: the rules over its stored sources, each alert published once per alert_id
(Powertools idempotency + SNS FIFO deduplication), so only what is new goes out. Its ``alerts``
rows are the alerts raised now plus those stored before that are no longer raised: an alert
sent cannot be unsent, and the table lists what was sent (as locally).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

from botocore.exceptions import ClientError
from pydantic import BaseModel

from skysift import errors
from skysift.aws.catalog import footprint_cells
from skysift.aws.steps import AlertsResult, Context, StateModel, send_alerts
from skysift.catalog.history import angular_distance_deg
from skysift.catalog.records import ImageRecord, ImageStatus

__all__ = [
    "HISTORY_MARGIN_DEG",
    "LaterImage",
    "LaterImagesRequest",
    "LaterImagesResult",
    "ReopenRequest",
    "later_images_step",
    "reopen_alerts_step",
]

log = logging.getLogger(__name__)

#: Margin (deg) added to the sum of two footprint radii for them to count as the same sky: the
#: value ``skysift run`` uses (:data:`skysift.pipeline.survey.HISTORY_MARGIN_DEG`, checked by the tests).
HISTORY_MARGIN_DEG = 0.01


class LaterImagesRequest(StateModel):
    """LaterImages' input: the image Record just committed (``$.record``)."""

    image_id: str
    status: ImageStatus


class LaterImage(BaseModel):
    """One image whose alerts are decided again."""

    image_id: str
    obs_time: str | None = None
    reason: str  # "later" (observed after the image just recorded) | "self"


class LaterImagesResult(BaseModel):
    images: list[LaterImage]


class ReopenRequest(StateModel):
    """ReopenAlert's input: one item of LaterImages' list."""

    image_id: str


def _summary_row(ctx: Context, image_id: str) -> tuple[ImageRecord, datetime] | None:
    """The image's row from its detection summary, and when the summary was written (None: no
    ``ok`` summary, e.g. an index-only image)."""
    bucket, key = ctx.config.catalog_bucket, ctx.summary_uri(image_id).split("/", 3)[3]
    try:
        got = ctx.s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
            return None
        raise
    summary = json.loads(got["Body"].read())
    if summary.get("status") != ImageStatus.OK:
        return None
    return ImageRecord.from_json(summary["image_row"]), got["LastModified"]


def _reaches(image: ImageRecord, other: ImageRecord) -> bool:
    if other.status is not ImageStatus.OK or other.center_ra is None or other.obs_time is None:
        return False
    distance = float(angular_distance_deg(other.center_ra, other.center_dec, image.center_ra, image.center_dec))
    return distance <= float(image.radius_deg or 0.0) + float(other.radius_deg or 0.0) + HISTORY_MARGIN_DEG


def later_images_step(req: LaterImagesRequest, ctx: Context) -> LaterImagesResult:
    """The images whose alert decision the image just recorded may change, oldest first."""
    found = _summary_row(ctx, req.image_id) if req.status is ImageStatus.OK else None
    if found is None:
        return LaterImagesResult(images=[])
    image, summarised = found
    when = image.obs_time
    if when is None or image.center_ra is None:  # no time or no sky: no history to be part of
        return LaterImagesResult(images=[])
    # the ok images registered in the cells the image's disc (plus the margin) touches, and when
    cells = footprint_cells(image.center_ra, image.center_dec, float(image.radius_deg or 0.0) + HISTORY_MARGIN_DEG)
    later, missed = [], False
    for image_id, (other, registered) in ctx.store.registered_footprints(cells).items():
        if image_id == req.image_id or not _reaches(image, other):
            continue
        if other.obs_time > when:
            later.append(LaterImage(image_id=image_id, obs_time=other.obs_time.isoformat(), reason="later"))
        elif other.obs_time < when and registered >= summarised:
            missed = True
    later.sort(key=lambda item: (item.obs_time or "", item.image_id))
    own = [LaterImage(image_id=req.image_id, obs_time=when.isoformat(), reason="self")] if missed else []
    if later or own:
        log.info("%s: alerts of %d later image(s) decided again%s", req.image_id, len(later),
                 " and its own (an earlier image was recorded meanwhile)" if own else "")
    return LaterImagesResult(images=own + later)


def reopen_alerts_step(req: ReopenRequest, ctx: Context) -> AlertsResult:
    """The Alerts step again for a recorded image: send what is new, list what was ever sent."""
    found = _summary_row(ctx, req.image_id)
    if found is None:
        raise errors.SourceNotFound("no detection summary of a recorded image", uri=ctx.summary_uri(req.image_id))
    record = found[0]
    result = send_alerts(record, ctx, sent_before=ctx.store.read_alerts(record).to_pylist())
    if result.n_published:
        log.info("%s: %d alert(s) sent on re-evaluation", record.uri, result.n_published)
    return result
