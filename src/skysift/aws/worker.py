"""Entrypoint of the worker container's Batch mode (large images).

The Lambda functions and the Batch job run the same image (containers/Dockerfile).
Batch starts it with the command override ``batch --bucket B --key K --summary-uri U``;
the container's entrypoint script hands ``batch ...`` to :func:`main`, anything else
to the Lambda runtime.

Exit codes: 0 measured (summary and sources rows written), 2 the image is bad (a
typed error; the summary at ``--summary-uri`` holds its reason for Quarantine),
1 anything unexpected.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence

from ..errors import SkysiftError
from .config import AwsConfig, settings_from_env
from .steps import Context, detect_step

log = logging.getLogger("skysift.worker")

EXIT_OK, EXIT_CRASH, EXIT_BAD_IMAGE = 0, 1, 2


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="batch", description="Measure one large image from S3 (tiled).")
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--summary-uri", required=True, help="where to write the summary (s3://...)")
    return parser.parse_args(list(argv))


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run one large-image job; returns the process exit code."""
    env = os.environ if environ is None else environ
    args = parse_args(sys.argv[1:] if argv is None else argv)
    ctx = Context(AwsConfig.from_env(env), settings_from_env(env))
    try:
        summary = detect_step(_request(args, ctx), ctx)
    except SkysiftError as exc:
        log.error("%s: %s", exc.reason, exc)
        return EXIT_BAD_IMAGE
    except Exception:
        log.exception("large-image job crashed on s3://%s/%s", args.bucket, args.key)
        return EXIT_CRASH
    log.info("s3://%s/%s: %s sources", args.bucket, args.key, summary["n_sources"])
    return EXIT_OK


def _request(args: argparse.Namespace, ctx: Context) -> dict:
    from .steps import inspect_step

    state = inspect_step({"source": {"bucket": args.bucket, "key": args.key}}, ctx)
    state["image"]["route"] = "large"
    state["image"]["summary_uri"] = args.summary_uri
    return state


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    sys.exit(main())
