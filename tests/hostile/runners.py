"""Put a directory of corpus files through each path in a memory-capped child process.

* :func:`run_local` runs ``skysift run DIR`` and reads the ``images`` and ``sources`` tables
  of its home.
* :func:`run_emulated` runs :mod:`hostile.emulated` (the system of ``template.yaml`` on moto,
  with our handlers in-process), which uploads every file, waits for IngestImage, and writes
  the same per-file outcomes as JSON.

Each child gets ``RLIMIT_AS`` = :data:`MEMORY_CAP_BYTES` (address space, per process: a
runaway allocation is a ``MemoryError`` there, never the kernel's OOM killer taking the
machine down); its peak RSS is measured with ``wait4``.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .corpus import CENTER_DEC, CENTER_RA, MAX_OFFSET_DEG

#: The address-space cap of every child (4 GiB: a few times what a 256^2 corpus needs).
MEMORY_CAP_BYTES = 4 * 2**30
#: Wall-time budgets: five to ten times what each path takes on a loaded 2-core machine. A file
#: that pins a worker past them is reported ``missing`` (no images row) instead of hanging the test.
LOCAL_BUDGET_S = 180.0
AWS_BUDGET_S = 480.0
EMULATED = Path(__file__).with_name("emulated.py")
#: Address space that scales with the machine's cores, reserved but never touched, would make
#: the same run pass the cap on a laptop and fail it on a 64-core CI runner: glibc reserves
#: 64 MiB per malloc arena (up to 8 arenas per core), and numpy's and scipy's OpenBLAS each
#: start a thread per core with an 8 MiB stack. Two arenas and one BLAS thread (the pipeline's
#: parallelism is processes; SEP does not use BLAS) make RLIMIT_AS measure what the code
#: allocates, the same on every machine.
CHILD_ENV = {"MALLOC_ARENA_MAX": "2", "OPENBLAS_NUM_THREADS": "1", "COLUMNS": "200"}


@dataclass
class Outcome:
    """What one path recorded for one file (its ``images`` row, and its sources' coordinates)."""

    status: str  # ok | indexed | failed | missing (no images row at all)
    reason: str | None = None
    route: str | None = None
    n_sources: int = 0
    checksum_status: str | None = None
    coords: str | None = None  # sky | null | wrong | None (no sources)
    message: str | None = None
    rows: int = 1  # images rows of the file: one per image HDU measured (the fields above: the first's)

    @property
    def verdict(self) -> tuple[str, str | None]:
        return self.status, self.reason


@dataclass
class PathRun:
    """Every file's outcome on one path, and what the run cost."""

    path: str  # "local" | "aws"
    outcomes: dict[str, Outcome]
    peak_rss_bytes: int
    seconds: float
    returncode: int
    log_path: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def log(self) -> str:
        return Path(self.log_path).read_text(errors="replace") if self.log_path else ""

    @property
    def log_tail(self) -> str:
        return self.log[-4000:]


def cap_memory(limit: int = MEMORY_CAP_BYTES) -> None:
    """``preexec_fn``: cap the child's address space."""
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def coords_verdict(ra: Sequence[float | None], dec: Sequence[float | None]) -> str | None:
    """``sky`` when every source lies near the synthetic pointing, ``null`` when none has
    coordinates, ``wrong`` otherwise (some misplaced, or some null and some not)."""
    ra_ = np.array([np.nan if v is None else v for v in ra], dtype=float)
    dec_ = np.array([np.nan if v is None else v for v in dec], dtype=float)
    if ra_.size == 0:
        return None
    known = np.isfinite(ra_) & np.isfinite(dec_)
    if not known.any():
        return "null"
    if not known.all():
        return "wrong"
    # small-angle separation from the pointing, degrees
    d_ra = (ra_ - CENTER_RA + 180.0) % 360.0 - 180.0
    separation = np.hypot(d_ra * np.cos(np.deg2rad(CENTER_DEC)), dec_ - CENTER_DEC)
    return "sky" if float(separation.max()) <= MAX_OFFSET_DEG else "wrong"


def outcomes_from_rows(images: list[dict], sources: list[dict]) -> dict[str, Outcome]:
    """Per file name: its ``images`` row (the first image HDU's, when it has several) and the
    verdict on its sources' coordinates."""
    by_image: dict[str, tuple[list, list]] = {}
    for row in sources:
        ra, dec = by_image.setdefault(row["image_id"], ([], []))
        ra.append(row["ra"])
        dec.append(row["dec"])
    by_file: dict[str, list[dict]] = {}
    for row in images:
        by_file.setdefault(str(row["uri"]).rsplit("/", 1)[-1], []).append(row)
    out = {}
    for name, rows in by_file.items():
        row = min(rows, key=lambda r: r.get("hdu") or 0)
        ra, dec = by_image.get(row["image_id"], ([], []))
        out[name] = Outcome(status=row["status"], reason=row.get("error_reason"), route=row.get("route"),
                            n_sources=int(row.get("n_sources") or 0), checksum_status=row.get("checksum_status"),
                            coords=coords_verdict(ra, dec), message=row.get("error_message"), rows=len(rows))
    return out


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _run_capped(command: list[str], log_path: Path, env: dict[str, str] | None = None,
                timeout_s: float = 1800) -> tuple[int, int, float]:
    """Run ``command`` capped; returns (exit code, peak RSS in bytes, seconds).

    ``wait4`` reports the larger of the child's own peak RSS and that of its largest
    waited-for descendant (a pool worker). After ``timeout_s``, and in any case once the
    child has exited, its whole process group is killed.
    """
    t0 = time.perf_counter()
    with open(log_path, "wb") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=cap_memory,
                                 start_new_session=True, env={**os.environ, **CHILD_ENV, **(env or {})})
        timer = threading.Timer(timeout_s, _kill_group, (child.pid,))  # the child and its pool workers
        timer.start()
        try:
            _, wait_status, usage = os.wait4(child.pid, 0)
        finally:
            timer.cancel()
            _kill_group(child.pid)  # whatever it left behind (a pool worker stuck on a file)
        child.returncode = os.waitstatus_to_exitcode(wait_status)
    return child.returncode, usage.ru_maxrss * 1024, time.perf_counter() - t0


def skysift_command() -> list[str]:
    """``skysift`` of this interpreter's environment."""
    script = Path(sys.executable).with_name("skysift")
    return [str(script)] if script.exists() else [sys.executable, "-m", "skysift.cli.main"]


def run_local(corpus_dir: Path, home: Path, *, workers: int = 2, budget_s: float = LOCAL_BUDGET_S) -> PathRun:
    """``skysift --home HOME run CORPUS_DIR -j WORKERS --force``, capped; the tables' verdicts.

    Killed after ``budget_s``: every image finished by then has its row (each is committed on
    its own), the others are ``missing``.
    """
    from skysift.catalog.query import LocalCatalog

    log_path = home.with_suffix(".log")
    home.parent.mkdir(parents=True, exist_ok=True)
    status, peak, seconds = _run_capped(
        [*skysift_command(), "--home", str(home), "run", str(corpus_dir), "-j", str(workers), "--force"], log_path,
        timeout_s=budget_s)
    catalog = LocalCatalog(home)
    images = catalog.arrow("SELECT * FROM images").to_pylist()
    sources = catalog.arrow("SELECT image_id, ra, dec FROM sources").to_pylist()
    outcomes = outcomes_from_rows(images, sources)
    for path in sorted(corpus_dir.iterdir()):
        outcomes.setdefault(path.name, Outcome("missing", message=f"no images row (run ended after {seconds:.0f} s)",
                                               rows=0))
    return PathRun("local", outcomes, peak, seconds, status, str(log_path))


def run_emulated(corpus_dir: Path, work: Path, *, budget_s: float = AWS_BUDGET_S) -> PathRun:
    """:mod:`hostile.emulated` over ``corpus_dir`` in a capped child; its JSON outcomes."""
    work.mkdir(parents=True, exist_ok=True)
    out = work / "aws-outcomes.json"
    log_path = work / "aws.log"
    tests_dir = str(Path(__file__).resolve().parents[1])
    status, peak, seconds = _run_capped(
        [sys.executable, str(EMULATED), str(corpus_dir), str(out), str(budget_s - 120)], log_path,
        env={"PYTHONPATH": os.pathsep.join(filter(None, [tests_dir, os.environ.get("PYTHONPATH")]))},
        timeout_s=budget_s)
    document = json.loads(out.read_text()) if out.exists() else {"outcomes": {}, "peak_rss_bytes": 0}
    outcomes = {name: Outcome(**value) for name, value in document["outcomes"].items()}
    extra = {k: v for k, v in document.items() if k not in ("outcomes",)}
    return PathRun("aws", outcomes, document.get("peak_rss_bytes") or peak, seconds, status, str(log_path), extra)
