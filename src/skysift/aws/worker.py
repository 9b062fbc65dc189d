"""Entrypoint of the worker container's Batch mode (large images).

The Lambda functions and the Batch job run the same image (containers/Dockerfile).
Batch starts it with the command override ``batch --bucket B --key K --summary-uri U --hdu N``
(``--hdu``: the image HDU, one image of a multi-extension file; without it the first image HDU);
the container's entrypoint script hands ``batch ...`` to :func:`main`, anything else
to the Lambda runtime.

Exit codes: 0 measured (summary and sources rows written), 2 the image is bad (a
typed error), 1 anything unexpected (``internal_error``, as local mode records it; a
request AWS refused for good, ``aws_error``). On failure the summary at ``--summary-uri``
holds the error and its reason for Quarantine, whichever step raised it (the header check
included). 75 (EX_TEMPFAIL): a transient AWS fault outlasted botocore's retries (throttling,
5xx, a dropped connection, :mod:`skysift.aws.faults`); the job definition's RetryStrategy
runs the job again, and no failure summary is written.

With ``--execution NAME`` (IngestImage passes its execution's name) the job measures the image only
if no other job of the same execution is doing so: a SubmitJob whose response was lost, retried by
Step Functions, starts a second job, which waits for the first and ends as it did
(:mod:`skysift.aws.jobclaim`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence

from skysift.aws.config import AwsConfig, settings_from_env
from skysift.aws.faults import failure_record
from skysift.aws.jobclaim import JOB_ATTEMPT_TIMEOUT_S, claim_uri, run_claimed
from skysift.aws.steps import (
    EXIT_TRANSIENT,
    Context,
    ImageState,
    IngestEvent,
    IngestState,
    SourceObject,
    detect_step,
    inspect_step,
    put_json,
)
from skysift.catalog.records import ImageStatus, Route
from skysift.errors import SkysiftError

__all__ = ["main", "parse_args"]

log = logging.getLogger("skysift.worker")

EXIT_OK, EXIT_CRASH, EXIT_BAD_IMAGE = 0, 1, 2


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="batch", description="Measure one large image from S3 (tiled).")
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--summary-uri", required=True, help="where to write the summary (s3://...)")
    parser.add_argument("--hdu", type=int, default=None, help="index of the image HDU (default: the first image HDU)")
    parser.add_argument("--execution", default=None,
                        help="the Step Functions execution's name: one job measures the image per execution")
    return parser.parse_args(list(argv))


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run one large-image job; returns the process exit code."""
    env = os.environ if environ is None else environ
    args = parse_args(sys.argv[1:] if argv is None else argv)
    ctx = Context(AwsConfig.from_env(env), settings_from_env(env))
    if args.execution is None:
        return _run(args, ctx)
    return run_claimed(ctx.s3, claim_uri(args.summary_uri, args.execution), env.get("AWS_BATCH_JOB_ID"),
                       lambda: _run(args, ctx), lease_s=JOB_ATTEMPT_TIMEOUT_S)


def _run(args: argparse.Namespace, ctx: Context) -> int:
    """Measure the image; the exit code."""
    try:
        summary = detect_step(_request(args, ctx), ctx)
    except Exception as exc:
        record = failure_record(exc)
        if record["transient"]:
            log.warning("transient failure, exit %d to be run again: %s", EXIT_TRANSIENT, record["message"])
            return EXIT_TRANSIENT
        if isinstance(exc, SkysiftError):
            log.error("%s: %s", exc.reason, exc)
        else:
            log.exception("large-image job crashed on s3://%s/%s", args.bucket, args.key)
        _record_failure(ctx, args.summary_uri, {**record, "uri": record.get("uri") or f"s3://{args.bucket}/{args.key}"})
        return EXIT_BAD_IMAGE if isinstance(exc, SkysiftError) else EXIT_CRASH
    log.info("s3://%s/%s: %s sources", args.bucket, args.key, summary.n_sources)
    return EXIT_OK


def _record_failure(ctx: Context, summary_uri: str, record: dict) -> None:
    """The failure summary Quarantine reads (:func:`skysift.aws.faults.failure_record`)."""
    try:
        put_json(ctx.s3, summary_uri, {"status": ImageStatus.FAILED, "error": record})
    except Exception:  # S3 itself failing: Quarantine then records the job's exit instead
        log.exception("could not write the failure summary to %s", summary_uri)


def _request(args: argparse.Namespace, ctx: Context) -> IngestState:
    """DetectLarge's request: the header read again here (the job's own check), on the large route."""
    state = inspect_step(IngestEvent(source=SourceObject(bucket=args.bucket, key=args.key), hdu=args.hdu), ctx)
    image = ImageState(info=state.image.info, route=Route.LARGE, summary_uri=args.summary_uri)
    return IngestState(source=state.source, image=image)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    sys.exit(main())
