"""Entrypoint of the time-lag Batch job: ``python -m skysift.aws.timelag_job REQUEST_URI``.

The science is :func:`skysift.timelag.worker.run` (which knows nothing of AWS); this adds what
the job needs on AWS, as :mod:`skysift.aws.worker` does for large images:

* **Exit codes from AWS failures too.** A transient AWS fault that outlasted botocore's and
  s3fs's retries (throttling, 5xx, a dropped connection: :mod:`skysift.aws.faults`) exits 75
  and the job definition's RetryStrategy runs the job again; a permanent one (``AccessDenied``,
  a bad request, no frames) exits 2 and is not retried; anything unexpected exits 1.
* **One job per execution** (:mod:`skysift.aws.jobclaim`): when SubmitJob's response was lost
  and Step Functions submitted a second job, the second waits for the first and ends as it did.
  The claim, ``timelag-requests/{execution}.job.json`` beside the request, keeps the exit code
  and a one-line message, which TimeLagAnalysis reads for the cause of a failed execution.

The summary ``<output>.json`` is written last (by the worker): it is the result's commit point.
When the execution fails, TimeLagAnalysis removes what the job wrote under its own
``timelag/{execution}/`` (the Discard state), so nothing there looks like a result.
"""

from __future__ import annotations

import json
import logging
import os
import sys

import boto3

from skysift.aws.faults import failure_record
from skysift.aws.jobclaim import run_claimed
from skysift.errors import SkysiftError

__all__ = ["TIMELAG_ATTEMPT_TIMEOUT_S", "claim_uri", "main"]

log = logging.getLogger("skysift.timelag_job")

EXIT_OK, EXIT_CRASH, EXIT_PERMANENT, EXIT_TRANSIENT = 0, 1, 2, 75
#: The time-lag job definition's ``Timeout.AttemptDurationSeconds`` (template.yaml): the claim's lease.
TIMELAG_ATTEMPT_TIMEOUT_S = 3600


def claim_uri(request_uri: str) -> str:
    """``.../timelag-requests/{execution}.job.json`` for ``.../timelag-requests/{execution}.json``."""
    return f"{request_uri.removesuffix('.json')}.job.json"


def _run(request_uri: str) -> tuple[int, str | None]:
    """Run the analysis; the exit code, and for a failure its one-line message."""
    from skysift.timelag.worker import run

    try:
        summary = run(request_uri)
    except Exception as exc:
        record = failure_record(exc)
        message = " ".join(str(record.get("message") or type(exc).__name__).split())[:300]
        print(json.dumps({"status": "failed", "request": request_uri, **record}, default=str))
        if record["transient"]:
            log.warning("transient failure, exit %d to be run again: %s", EXIT_TRANSIENT, message)
            return EXIT_TRANSIENT, message
        known = isinstance(exc, SkysiftError) or record.get("reason") == "aws_error"
        log.error("time-lag job failed: %s", message, exc_info=not known)
        return (EXIT_PERMANENT if known else EXIT_CRASH), f"{record.get('reason')}: {message}"
    print(json.dumps(summary))
    return EXIT_OK, None


def main(argv: list[str] | None = None) -> int:
    """Command-line entry; returns the process exit status."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m skysift.aws.timelag_job REQUEST_URI (s3:// URL or path)", file=sys.stderr)
        return EXIT_PERMANENT
    request_uri = args[0]
    if not request_uri.startswith("s3://"):  # a local request (tests, a laptop): nothing to claim
        return _run(request_uri)[0]
    return run_claimed(boto3.client("s3"), claim_uri(request_uri), os.environ.get("AWS_BATCH_JOB_ID"),
                       lambda: _run(request_uri), lease_s=TIMELAG_ATTEMPT_TIMEOUT_S)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr)
    sys.exit(main())
