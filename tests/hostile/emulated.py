"""Child process: every file of a directory through the emulated AWS system; outcomes as JSON.

``python tests/hostile/emulated.py CORPUS_DIR OUT.json BUDGET_S`` (run by :func:`hostile.runners.run_emulated`
under a memory cap). Uploads each file to the raw bucket (S3 -> EventBridge -> IngestImage, the
real ``statemachine/ingest.asl.json`` on moto, our handlers in-process), waits for every
execution, and writes per file: the ``images`` row's status, reason, route, source count,
checksum status and the verdict on its sources' coordinates (read back from the Glue tables),
plus each execution's status and error. Template defaults throughout (the point is that the
deployed defaults give the verdicts local mode gives), except the routing threshold, lowered so
that the corpus's 512 x 512 files take the Batch (tiled) path.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "corpus/"


def _vm_peak() -> int | None:
    """The process's peak address space (what RLIMIT_AS caps), from /proc; None elsewhere."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmPeak:"):
            return int(line.split()[1]) * 1024
    return None


def main(corpus_dir: Path, out: Path, budget_s: float) -> int:
    """Upload, wait at most ``budget_s``, write the outcomes. An execution still running then
    (a file that pins a handler) is reported as ``missing`` and the process exits at once."""
    from hostile.corpus import SMALL_IMAGE_MAX_PIXELS
    from hostile.runners import Outcome, outcomes_from_rows
    from skysift.aws.emulation.emulate import Emulation

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    files = sorted(p for p in corpus_dir.iterdir() if p.is_file())
    with Emulation(ROOT, parameters={"SmallImageMaxPixels": SMALL_IMAGE_MAX_PIXELS}) as aws:
        for path in files:
            aws.upload(path, PREFIX + path.name)
        try:
            executions, still_running = aws.wait(timeout_s=budget_s), False
        except TimeoutError:
            executions, still_running = aws.executions(), True
        images = aws.read_table("images").to_pylist()
        sources = aws.read_table("sources")
        sources = sources.select(["image_id", "ra", "dec"]).to_pylist() if sources.num_rows else []
        outcomes = outcomes_from_rows(images, sources)
        runs = {}
        for execution in executions:
            key = json.loads(execution["input"]).get("detail", {}).get("object", {}).get("key", "")
            runs[key.removeprefix(PREFIX)] = {"status": execution["status"], "error": execution.get("error"),
                                              "cause": (execution.get("cause") or "")[:500]}
        for path in files:
            if path.name not in outcomes:
                run = runs.get(path.name, {})
                outcomes[path.name] = Outcome(status="missing", message=f"no images row after {budget_s:.0f} s; "
                                                                         f"execution {run or 'never started'}",
                                              rows=0)
        document = {
            "outcomes": {name: asdict(outcome) for name, outcome in sorted(outcomes.items())},
            "executions": runs,
            "still_running_after_budget": still_running,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "peak_address_space_bytes": _vm_peak(),
            "seconds": time.perf_counter() - t0,
        }
        out.write_text(json.dumps(document, indent=2, default=str))
        if still_running:  # a handler thread is stuck: do not wait for it on the way out
            os._exit(3)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])))
