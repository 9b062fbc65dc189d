"""Local survey runs: many images in parallel processes, then alerts in time order.

Phase 1 measures and writes every image in a process pool (SEP holds the GIL, so
parallelism is processes; each worker gets an equal share of the memory budget).
Phase 2 raises alerts image by image in order of observation time, so the 'new
source' rule always compares with every earlier image, whatever order the workers
finished in.

Runs resume: an image whose current version (same image_id) already has an ``ok``
or ``indexed`` row is not measured again, and its alerts are not evaluated again
once they have been. Every image is written on its own, atomically, so an
interrupted run loses at most the images in flight. Each run leaves a JSON report.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from . import storage
from .alerts import LogPublisher, deliver_alerts, prepare_alerts
from .errors import SkysiftError
from .fitsio import make_image_id
from .pipeline import ImageSummary, process_image, record, summarize
from .query import LocalCatalog
from .settings import Settings
from .tables import LocalTables

log = logging.getLogger(__name__)

ProgressCallback = Callable[[ImageSummary], None]


@dataclass
class RunReport:
    summaries: list[ImageSummary] = field(default_factory=list)
    seconds: float = 0.0
    alerts_seconds: float = 0.0  # wall time of the alert phase (included in ``seconds``)
    skipped: int = 0
    interrupted: bool = False
    report_path: str | None = None

    def count(self, status: str) -> int:
        return sum(1 for s in self.summaries if s.status == status)

    @property
    def n_sources(self) -> int:
        return sum(s.n_sources for s in self.summaries)

    @property
    def n_alerts(self) -> int:
        return sum(s.n_alerts for s in self.summaries)

    def to_dict(self) -> dict:
        measured = [s.seconds for s in self.summaries if s.seconds > 0]
        return {
            "finished_at": datetime.now(UTC).isoformat(),
            "seconds": self.seconds,
            "alerts_seconds": self.alerts_seconds,
            "interrupted": self.interrupted,
            "images": len(self.summaries),
            "skipped_already_done": self.skipped,
            "status": dict(Counter(s.status for s in self.summaries)),
            "failure_reasons": dict(Counter(s.reason for s in self.summaries if s.reason)),
            "failures": [{"uri": s.uri, "reason": s.reason, "message": s.message} for s in self.summaries if s.status == "failed"],
            "sources": self.n_sources,
            "alerts": self.n_alerts,
            "seconds_per_image_median": statistics.median(measured) if measured else None,
            "per_image": [asdict(s) | {"top_sources": None} for s in self.summaries],
        }


def _measure_and_write(uri: str, settings: Settings, hdu: int | str | None, tile_workers: int,
                       upcoming: str | None = None) -> tuple[ImageSummary, dict]:
    if upcoming:
        storage.prefetch(upcoming)  # read ahead while this image is measured
    result = process_image(uri, settings, hdu=hdu, workers=tile_workers)
    pointers = record(result, LocalTables(settings.home))
    return summarize(result, pointers), result.image_row


def _already_done(uris: list[str], home: Path) -> tuple[list[str], list[dict]]:
    """Split ``uris`` into those to measure and the ``images`` rows of those already done.

    Only files whose URI is in the ``images`` table are fingerprinted (to check that
    their content is the one measured); a file never seen is simply to do.
    """
    catalog = LocalCatalog(home)
    rows = catalog.sql("SELECT * FROM images WHERE status IN ('ok', 'indexed')")
    if rows.empty:
        return uris, []
    by_id = {r["image_id"]: r for r in rows.to_dict("records")}
    seen_uris = {r["uri"] for r in by_id.values()}
    todo, done = [], []
    for uri in uris:
        if uri not in seen_uris:
            todo.append(uri)
            continue
        try:
            image_id = make_image_id(uri, storage.fingerprint(uri))
        except (SkysiftError, OSError):
            todo.append(uri)
            continue
        (done.append(by_id[image_id]) if image_id in by_id else todo.append(uri))
    return todo, done


def _upcoming(uris: list[str], index: int) -> str | None:
    return uris[index] if index < len(uris) else None


def _alerts_marker(home: Path, image_id: str) -> Path:
    return home / "alerts-evaluated" / image_id


def run_local(uris: Iterable[str], settings: Settings, *, workers: int = 1, hdu: int | str | None = None,
              on_image: ProgressCallback | None = None, resume: bool = True) -> RunReport:
    """Process every image, write the tables under ``settings.home``, raise alerts, report."""
    t0 = time.perf_counter()
    uris = [storage.normalize_uri(u) for u in uris]
    home = Path(settings.home)
    todo, finished_rows = _already_done(uris, home) if resume else (uris, [])
    report = RunReport(skipped=len(finished_rows))
    rows: list[dict] = list(finished_rows)
    # A single image gets every worker as tile workers; many images one worker each,
    # with an equal share of the memory budget.
    per_worker = settings.model_copy(update={"limits": settings.limits.model_copy(
        update={"max_memory_bytes": max(2**28, settings.limits.max_memory_bytes // max(1, workers))})})
    try:
        if workers <= 1 or len(todo) <= 1:
            for i, uri in enumerate(todo):
                summary, row = _measure_and_write(uri, settings, hdu, workers, _upcoming(todo, i + 1))
                report.summaries.append(summary)
                rows.append(row)
                if on_image:
                    on_image(summary)
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                # tasks start in order: the worker on image i reads ahead the one starting after i's peers
                futures = [pool.submit(_measure_and_write, uri, per_worker, hdu, 1, _upcoming(todo, i + workers))
                           for i, uri in enumerate(todo)]
                try:
                    for future in as_completed(futures):
                        summary, row = future.result()
                        report.summaries.append(summary)
                        rows.append(row)
                        if on_image:
                            on_image(summary)
                except KeyboardInterrupt:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
    except KeyboardInterrupt:
        report.interrupted = True
        log.warning("interrupted: %d images finished; run again to resume", len(report.summaries))
    if not report.interrupted:
        t_alerts = time.perf_counter()
        _raise_alerts_in_time_order(rows, report, settings, workers)
        report.alerts_seconds = time.perf_counter() - t_alerts
    report.seconds = time.perf_counter() - t0
    report.report_path = _write_report(home, report)
    return report


def _raise_alerts_in_time_order(rows: list[dict], report: RunReport, settings: Settings, workers: int) -> None:
    """Alerts of every image not yet evaluated, delivered in order of observation time.

    Every image's rows are written by now, so each image's alerts (which read the tables
    and earlier images' pixels, and store cutouts named by alert_id) are prepared in
    parallel; delivery is in order.
    """
    store, publisher = LocalTables(settings.home), LogPublisher(settings.home)
    by_id = {s.image_id: s for s in report.summaries}
    ordered = sorted(rows, key=lambda r: (r.get("obs_time") is None, str(r.get("obs_time")), r.get("uri") or ""))
    pending = [r for r in ordered if r.get("status") == "ok" and not _alerts_marker(Path(settings.home), r["image_id"]).exists()]
    if workers > 1 and len(pending) > 1:
        with ProcessPoolExecutor(max_workers=workers, initializer=_open_worker_store, initargs=(settings.home,)) as pool:
            prepared = pool.map(_prepare_alerts, pending, [settings] * len(pending), chunksize=4)
            _deliver_in_order(pending, prepared, store, publisher, by_id, settings)
    else:
        _deliver_in_order(pending, (_prepare_alerts(r, settings, store) for r in pending), store, publisher, by_id, settings)


_worker_store: LocalTables | None = None


def _open_worker_store(home: Path) -> None:
    """Pool initializer: one store per worker process, so its file caches serve every image."""
    global _worker_store
    _worker_store = LocalTables(home)


def _prepare_alerts(row: dict, settings: Settings, store: LocalTables | None = None) -> list[dict]:
    store = store or _worker_store
    return prepare_alerts(row, store.read_sources(row), store, settings.alerts, settings.background)


def _deliver_in_order(rows: list[dict], prepared: Iterable, store: LocalTables, publisher: LogPublisher,
                      by_id: dict[str, ImageSummary], settings: Settings) -> None:
    for row, alerts in zip(rows, prepared, strict=True):
        sent = deliver_alerts(row, alerts, store, publisher)
        marker = _alerts_marker(Path(settings.home), row["image_id"])
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        if row["image_id"] in by_id:
            by_id[row["image_id"]].n_alerts = len(sent)


def _write_report(home: Path, report: RunReport) -> str:
    folder = home / "runs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"run-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}.json"
    path.write_text(json.dumps(report.to_dict(), indent=2, default=str))
    return str(path)
