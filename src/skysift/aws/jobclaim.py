"""One Batch job per image per execution, however many SubmitJob calls it took.

``batch:submitJob.sync`` is not idempotent: when SubmitJob was served but its response was lost
(a 5xx or a dropped connection after Batch created the job), Step Functions retries the call and
Batch runs a second job for the same image, while the first runs on unwatched. Both would
measure the image (hours of Fargate for a large one) and write the same objects.

So a large-image job first claims its execution's work with a conditional put of
``runs/{image_id}/jobs/{execution}.json`` (``If-None-Match: *``), holding its Batch job id, and
marks it ``done`` with its exit code when it ends (``released`` when it exits 75 to be run
again). A job that finds another live job's claim waits for it to end and then ends the way it
did, without measuring: with exit 0 the summary the state machine reads next is the other job's;
with a failure the failure summary Quarantine reads is there too. It takes the claim over
(``If-Match`` on the claim's ETag) when the claim is its own (a later attempt of the same job),
``released``, or older than the job's attempt timeout (Batch has killed its holder). A claim is
per execution: a later delivery of the same object (another execution) measures it again, as the
Lambda route does.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlparse

from botocore.exceptions import ClientError

from skysift.aws.faults import failure_record

__all__ = ["CLAIM_POLL_S", "JOB_ATTEMPT_TIMEOUT_S", "Claim", "claim_uri", "run_claimed", "run_once"]

log = logging.getLogger(__name__)

#: How often a waiting job reads the claim of the job it waits for.
CLAIM_POLL_S = 5.0
#: The large-image job definition's ``Timeout.AttemptDurationSeconds`` (template.yaml): Batch kills an
#: attempt after it, so a claim left ``running`` longer than this has no live holder.
JOB_ATTEMPT_TIMEOUT_S = 14400
#: The exit code a job uses for "run me again" (EX_TEMPFAIL, as :mod:`skysift.aws.worker`).
_EXIT_TRANSIENT = 75
_CONFLICT = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}


@dataclass(frozen=True)
class Claim:
    """The claim object: which job holds the work, and how it ended."""

    job_id: str
    state: str  # running | done | released
    expires_at: float  # epoch seconds: after this its holder is dead (the attempt timeout)
    exit_code: int | None = None
    message: str | None = None  # why it failed, in one line (the state machine's cause)

    def live(self, now: float) -> bool:
        return self.state == "running" and now < self.expires_at


def claim_uri(summary_uri: str, execution: str) -> str:
    """``s3://CATALOG/runs/{image_id}/jobs/{execution}.json``, beside the image's summary."""
    return f"{summary_uri.rsplit('/', 1)[0]}/jobs/{execution}.json"


def _split(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def _read(s3, uri: str) -> tuple[Claim | None, str | None]:
    bucket, key = _split(uri)
    try:
        got = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
            return None, None
        raise
    return Claim(**json.loads(got["Body"].read())), got["ETag"]


def _put(s3, uri: str, claim: Claim, condition: dict[str, str]) -> bool:
    """Put ``claim`` under ``condition``; False if another job changed the object first."""
    bucket, key = _split(uri)
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(claim.__dict__).encode(),
                      ContentType="application/json", **condition)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in _CONFLICT:
            return False
        raise
    return True


def run_once(s3, uri: str, job_id: str | None, work: Callable[[], int | tuple[int, str | None]], *,
             lease_s: float, poll_s: float | None = None) -> int:
    """``work()``'s exit code, run by this job only if no other live job has claimed it at ``uri``;
    else the exit code of the job that did (waited for, polling every ``poll_s``). ``work`` may
    return ``(exit code, one-line message)``: the message of a failure is kept in the claim.

    ``lease_s`` is the job's attempt timeout: a claim left ``running`` longer than that is dead.
    """
    job_id = job_id or f"local-{uuid.uuid4()}"
    poll_s = CLAIM_POLL_S if poll_s is None else poll_s
    waited_for: str | None = None
    while True:
        current, etag = _read(s3, uri)
        now = time.time()
        if current is not None and current.job_id != job_id:
            if current.live(now):
                if waited_for != current.job_id:
                    log.info("job %s: job %s is measuring this image for this execution; waiting for it", job_id,
                             current.job_id)
                    waited_for = current.job_id
                time.sleep(poll_s)
                continue
            if current.state == "done" and current.exit_code is not None:
                log.info("job %s: job %s did this execution's work (exit %d): nothing to do", job_id,
                         current.job_id, current.exit_code)
                return current.exit_code
        mine = Claim(job_id=job_id, state="running", expires_at=now + lease_s)
        condition = {"IfNoneMatch": "*"} if etag is None else {"IfMatch": etag}
        if _put(s3, uri, mine, condition):
            break
    code, message = _EXIT_TRANSIENT, "the job raised"
    try:
        done = work()
        code, message = done if isinstance(done, tuple) else (done, None)
    finally:  # a transient exit releases the work for another job (or this job's next attempt)
        ended = Claim(job_id=job_id, state="released" if code == _EXIT_TRANSIENT else "done",
                      expires_at=mine.expires_at, exit_code=code, message=message)
        try:
            _put(s3, uri, ended, {})
        except Exception:  # the claim then expires with its lease
            log.exception("job %s: could not mark its claim %s %s", job_id, uri, ended.state)
    return code


def run_claimed(s3, uri: str, job_id: str | None, work: Callable[[], int | tuple[int, str | None]], *,
                lease_s: float) -> int:
    """:func:`run_once`, as a job's exit code also when the claim itself cannot be read or written:
    75 (run again) for a transient AWS fault, 1 for anything else."""
    try:
        return run_once(s3, uri, job_id, work, lease_s=lease_s)
    except Exception as exc:
        record = failure_record(exc)
        log.error("job %s: its claim %s failed: %s", job_id, uri, record["message"])
        return _EXIT_TRANSIENT if record["transient"] else 1
