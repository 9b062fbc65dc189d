"""Batch container entrypoint: ``python -m skysift.timelag.worker REQUEST.json``.

REQUEST is a local path or an ``s3://`` URL of a :class:`TimeLagRequest` JSON. The
worker runs the same pipeline as ``skysift timelag`` (on a LocalCluster inside the
container, or on ``scheduler`` when the request names one), writes the FITS and PNG
to the request's ``output``/``png`` (usually ``s3://``), writes a summary JSON next
to the FITS (``<output>.json``) and prints it as one line on stdout. A request without
``index`` or ``frames`` uses the ``SKYSIFT_TIMELAG_INDEX`` environment variable; a request
with ``frames`` (e.g. a CloudCatalog search, ``"anon": true``) needs no index; without ``workers``, the
LocalCluster gets one single-threaded worker process per CPU the job was given.

Exit status tells AWS Batch whether a retry can help:

* 0: done;
* 2: permanent failure (bad request, no series, unusable frames): do not retry;
* 75 (EX_TEMPFAIL): transient failure (index or scheduler unavailable): retry.
"""

from __future__ import annotations

import json
import logging
import os
import sys

from skysift.errors import SkysiftError

__all__ = ["INDEX_ENV", "main", "run"]

log = logging.getLogger("skysift.timelag.worker")

EXIT_OK, EXIT_PERMANENT, EXIT_TRANSIENT = 0, 2, 75
#: Index used when the request names none, e.g. ``athena://skysift?workgroup=skysift`` (set by the job definition).
INDEX_ENV = "SKYSIFT_TIMELAG_INDEX"


def run(request_uri: str) -> dict[str, object]:
    """Load the request, run it, write outputs and the summary; return the summary."""
    # imported here so that a usage error costs no sunpy/dask import time
    from skysift.timelag.cluster import dask_client
    from skysift.timelag.output import put_bytes
    from skysift.timelag.pipeline import find_series, run_timelag, series_source
    from skysift.timelag.request import TimeLagRequest

    defaults = {"index": os.environ.get(INDEX_ENV), "workers": len(os.sched_getaffinity(0))}  # all the job's vCPUs
    request = TimeLagRequest.load(request_uri, defaults=defaults)
    index = series_source(request)
    tables = find_series(index, request)  # fail before starting a cluster when there is nothing to do
    cluster: dict[str, object] = {}
    with dask_client(request.scheduler, request.workers, gateway=request.gateway,
                     cluster_options=request.cluster_options, cluster_info=cluster) as client:
        summary = run_timelag(request, index, client, tables=tables)
    summary = {"status": "ok", "request": request_uri, **summary, "cluster": cluster}
    put_bytes(f"{request.output}.json", json.dumps(summary).encode())
    return summary


def main(argv: list[str] | None = None) -> int:
    """Command-line entry; returns the process exit status."""
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr)
    if len(args) != 1:
        print("usage: python -m skysift.timelag.worker REQUEST.json (path or s3:// URL)", file=sys.stderr)
        return EXIT_PERMANENT
    try:
        summary = run(args[0])
    except SkysiftError as exc:
        record = {"status": "failed", "request": args[0], **exc.to_record()}
        print(json.dumps(record))
        log.error("time-lag job failed: %s", exc)
        return EXIT_TRANSIENT if exc.transient else EXIT_PERMANENT
    print(json.dumps(summary))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
