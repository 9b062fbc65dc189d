"""Local survey runs: many images in parallel processes, then alerts in time order.

Phase 1 measures and writes every image in a process pool (SEP holds the GIL, so
parallelism is processes; each worker gets an equal share of the memory budget).
Phase 2 raises alerts image by image in order of observation time, so the 'new
source' rule always compares with every earlier image, whatever order the workers
finished in. Forced photometry there reads earlier images' skies: the measuring keeps the
sky it subtracted from each image whose header places it under another image of the run
(:func:`~skysift.core.pointing.overlapping`), so the alert phase neither reads it nor estimates it again.
In a pool, preparing an image's alerts (rules, cut-outs, packets) starts in phase 1, as soon
as every image its header places earlier is measured (:mod:`~skysift.pipeline.early_alerts`,
which also decides whether such alerts stand); phase 2 then delivers them in time order.

Every image HDU of a file is an image of its own (a mosaic's CCDs, one per extension):
the run lists each file's image HDUs from its headers first (:func:`~skysift.io.fits.image_hdus`),
unless ``hdu`` names the one to measure.

A run holds the home's lock (:mod:`skysift.catalog.homelock`) from start to end, so two runs
on one home go one after the other; with the lock held it first removes the
temporary files a killed writer left. Runs resume: an image whose current version
(same image_id: same location, content and HDU) already has an ``ok`` or ``indexed``
row measured with the same settings (``images.settings_hash``, see
:meth:`~skysift.settings.Settings.measurement_hash`) is not measured again; one
measured with other settings (``--threshold 10`` after a default run) is measured
again and its rows replaced, and the report counts it (``remeasured_settings``).
Every image is written on its own, atomically, so an interrupted run loses at most
the images in flight.

The alert decision of an image rests on the earlier images of its sky, so the
marker ``{home}/alerts-evaluated/{image_id}`` records which ones it was made
against. Phase 2 evaluates every ``ok`` image of the home (not only this run's)
whose marker is missing or lists other earlier images than the tables now hold: an
earlier image that arrives late (a later run, another night's folder) re-opens the
decision of the later images it overlaps. Alerts are sent once per alert_id, so a
re-evaluation sends only what is new; an alert already sent stays sent (and keeps
its ``alerts`` row) even if the new decision would not raise it. Each run leaves a
JSON report.

One image never stops a run: :func:`~skysift.pipeline.image.process_image` turns every
exception into a failed row; a worker process killed by the kernel (out of memory, a
crash in compiled code) breaks the pool, so the images it was measuring are tried
again alone and, if they kill their process again, recorded as failed
(``worker_died``) while the run goes on in a new pool; and an image whose alerts
cannot be evaluated is logged and listed in the report (and tried again next run).
"""

from __future__ import annotations

import json
import logging
import operator
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from skysift.alerts import forced
from skysift.alerts.delivery import deliver_alerts, prepare_alerts
from skysift.alerts.log import LogPublisher
from skysift.catalog.arrow import rows_of
from skysift.catalog.history import angular_distance_deg
from skysift.catalog.homelock import home_lock
from skysift.catalog.integrity import remove_orphan_temporaries
from skysift.catalog.objects import ObjectsReport, update_objects
from skysift.catalog.records import ImageRecord, ImageStatus
from skysift.catalog.tables import LocalTables
from skysift.core.metadata import observation_time
from skysift.core.pointing import SkyDisc, header_disc, overlapping
from skysift.errors import InternalError, SkysiftError, WorkerDied
from skysift.heap import MMAP_THRESHOLD_BYTES, keep_frames_heap
from skysift.io import storage
from skysift.io.fits import image_hdu_headers, image_id_hdu, make_image_id, walk_file
from skysift.io.fitsheader import HeaderLimits
from skysift.parallel.pools import RUNNING_PREFIX, Alone, how_it_ended, run_surviving
from skysift.pipeline.early_alerts import EarlyAlerts, posix_seconds
from skysift.pipeline.image import ImageSummary, failed_result, process_image, record, summarize
from skysift.settings import Settings

__all__ = [
    "HISTORY_MARGIN_DEG",
    "LISTING_THREADS",
    "ImageUnit",
    "ProgressCallback",
    "RunReport",
    "images_to_measure",
    "run_local",
]

log = logging.getLogger(__name__)

ProgressCallback = Callable[[ImageSummary], None]
#: One image to measure: a file and the ``hdu`` argument of one of its image HDUs (None: its first).
ImageUnit = tuple[str, int | str | None]
#: Files whose headers are listed at once (the reads wait on disks and networks, not on the CPU).
LISTING_THREADS = 8
#: Exit statuses of ``skysift run`` (usage and configuration errors exit with 2).
EXIT_OK, EXIT_FAILURES, EXIT_INTERRUPTED = 0, 1, 130


@dataclass
class RunReport:
    summaries: list[ImageSummary] = field(default_factory=list)
    seconds: float = 0.0
    alerts_seconds: float = 0.0  # wall time of the alert phase (included in ``seconds``)
    skipped: int = 0
    #: images done before with other measurement settings, measured again by this run
    remeasured_settings: int = 0
    interrupted: bool = False
    report_path: str | None = None
    #: images measured but whose alerts could not be evaluated: {uri, image_id, reason, message}
    alert_failures: list[dict] = field(default_factory=list)
    #: alerts sent for images of earlier runs, whose decision an earlier image arriving now re-opened
    reopened_alerts: int = 0
    #: with ``objects``: what the objects step updated, or the exception that stopped it
    objects: ObjectsReport | None = None
    objects_error: BaseException | None = None

    def count(self, status: str) -> int:
        return sum(1 for s in self.summaries if s.status == status)

    @property
    def succeeded(self) -> bool:
        """Every image ok or indexed, every alert evaluated, and the run not interrupted."""
        return not (self.interrupted or self.alert_failures or self.count(ImageStatus.FAILED))

    @property
    def exit_code(self) -> int:
        """The run's exit status: :data:`EXIT_OK` (0) when it :attr:`succeeded`, :data:`EXIT_FAILURES`
        (1) when any image or its alerts failed (each is recorded and listed), :data:`EXIT_INTERRUPTED`
        (130, as for SIGINT) when interrupted."""
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_OK if self.succeeded else EXIT_FAILURES

    @property
    def n_sources(self) -> int:
        return sum(s.n_sources for s in self.summaries)

    @property
    def n_alerts(self) -> int:
        return sum(s.n_alerts for s in self.summaries) + self.reopened_alerts

    def to_dict(self) -> dict:
        measured = [s.seconds for s in self.summaries if s.seconds > 0]
        return {
            "finished_at": datetime.now(UTC).isoformat(),
            "seconds": self.seconds,
            "alerts_seconds": self.alerts_seconds,
            "interrupted": self.interrupted,
            "images": len(self.summaries),
            "skipped_already_done": self.skipped,
            "remeasured_settings": self.remeasured_settings,
            "status": dict(Counter(s.status for s in self.summaries)),
            "failure_reasons": dict(Counter(s.reason for s in self.summaries if s.reason)),
            "failures": [{"uri": s.uri, "reason": s.reason, "message": s.message} for s in self.summaries if s.status == ImageStatus.FAILED],
            "alert_failures": self.alert_failures,
            "sources": self.n_sources,
            "alerts": self.n_alerts,
            "reopened_alerts": self.reopened_alerts,
            "seconds_per_image_median": statistics.median(measured) if measured else None,
            "per_image": [asdict(s) | {"top_sources": None} for s in self.summaries],
        }


def _measure_and_write(uri: str, settings: Settings, hdu: int | str | None, tile_workers: int,
                       upcoming: str | None = None, skies: str | None = None) -> tuple[ImageSummary, ImageRecord]:
    """Measure one image and write its rows; with ``skies`` (the run's folder of skies, given for an
    image that another image of the run may overlap), its sky-subtracted frame is kept there for
    the alert phase's forced photometry (:func:`skysift.alerts.forced.keep_sky`)."""
    if upcoming:
        storage.prefetch(upcoming)  # read ahead while this image is measured
    keep = None if skies is None else partial(forced.keep_sky, skies, settings.background)
    result = process_image(uri, settings, hdu=hdu, workers=tile_workers, on_sky=keep)
    pointers = record(result, LocalTables(settings.home))
    return summarize(result, pointers), result.record


def _record_failure(uri: str, hdu: int | str | None, exc: BaseException, settings: Settings) -> tuple[ImageSummary, ImageRecord]:
    """The failed row of an image whose measurement ended in ``exc`` outside
    :func:`process_image` (its process died, or its rows could not be written)."""
    error = exc if isinstance(exc, SkysiftError) else InternalError.from_exception(exc, uri=uri)
    # a dead worker may have died reading the header: do not read it again in this process
    result = failed_result(uri, error, hdu=hdu, survey_default=settings.survey, read_header=not isinstance(exc, WorkerDied))
    try:
        pointers = record(result, LocalTables(settings.home))
    except Exception:  # the failure is still reported in the run's summary and report
        log.warning("%s: could not record its failure", uri, exc_info=True)
        pointers = {}
    return summarize(result, pointers), result.record


def images_to_measure(uris: list[str], hdu: int | str | None, limits: HeaderLimits) -> list[ImageUnit]:
    """Every image of every file, in file order: ``(uri, hdu)`` for the one ``hdu`` asked
    for, else for each image HDU the file's headers list (several files at once).

    A file whose headers cannot be listed is one unit ``(uri, None)``: measuring it fails
    with the reason, and is recorded, as for any image.
    """
    return [listed.unit for listed in _listed_units(uris, hdu, limits)]


@dataclass(frozen=True)
class _ListedImage:
    """One image to measure, with what its header says before it is measured."""

    unit: ImageUnit
    disc: SkyDisc | None = None  # where it points (:func:`~skysift.core.pointing.header_disc`)
    seconds: float | None = None  # when it was observed, POSIX (:func:`~skysift.core.metadata.observation_time`)
    pixels: int | None = None  # NAXIS1 x NAXIS2 (of the image a compressed HDU holds)

    @classmethod
    def from_header(cls, unit: ImageUnit, header: Any) -> _ListedImage:
        if header is None:
            return cls(unit)
        try:
            seconds = posix_seconds(observation_time(header))
        except Exception:  # a time that cannot be read is not known; the measuring reports it
            seconds = None
        return cls(unit, header_disc(header), seconds, _frame_pixels(header))


def _frame_pixels(header: Any) -> int | None:
    """Pixels of the 2-D frame a header describes; None when its axes are not known integers."""
    prefix = "ZNAXIS" if "ZNAXIS1" in header else "NAXIS"
    sizes = [header.get(f"{prefix}{axis}") for axis in (1, 2)]
    if not all(isinstance(size, int) and not isinstance(size, bool) and size >= 0 for size in sizes):
        return None
    return sizes[0] * sizes[1]


def _large_frames(listed: list[_ListedImage], todo: list[ImageUnit]) -> bool:
    """Whether a frame to measure has maps (float32 or int32 a pixel) beyond glibc's largest
    heap-served block: then each was mapped afresh, frame after frame (:func:`~skysift.heap.keep_frames_heap`).
    Paired whole runs: 16 x 4096^2 0.877x the time with the heap kept; 64 x 2048^2, whose maps
    the heap serves already, 1.056x (two A/Bs of 4 pairs each): for those it is left as it is."""
    measured = set(todo)
    return any(image.pixels is not None and image.pixels * 4 >= MMAP_THRESHOLD_BYTES
               for image in listed if image.unit in measured)


def _listed_units(uris: list[str], hdu: int | str | None, limits: HeaderLimits) -> list[_ListedImage]:
    """:func:`images_to_measure`, each unit with the sky disc and time its header gives (None when
    not known, as for an ``hdu`` asked for)."""
    if hdu is not None:
        return [_ListedImage((uri, hdu)) for uri in uris]

    def listed(uri: str) -> list[_ListedImage]:
        try:
            return [_ListedImage.from_header((uri, h), header) for h, header in image_hdu_headers(uri, limits=limits)]
        except Exception:  # whatever it is, the image's own reading reports it
            log.debug("%s: image HDUs not listed", uri, exc_info=True)
            return [_ListedImage((uri, None))]

    if len(uris) <= 1:
        return [image for uri in uris for image in listed(uri)]
    with ThreadPoolExecutor(max_workers=min(LISTING_THREADS, len(uris))) as pool:
        return [image for found in pool.map(listed, uris) for image in found]


def _overlapped(listed: list[_ListedImage], settings: Settings) -> set[ImageUnit]:
    """The units whose sky another unit of the run may overlap, by their headers' discs: the
    images the 'new source' rule may do forced photometry on (none when the rule is off)."""
    if settings.alerts.new_source_radius_arcsec is None:
        return set()
    hits = overlapping([image.disc for image in listed])
    return {image.unit for image, hit in zip(listed, hits, strict=True) if hit}


def _already_done(units: list[ImageUnit], home: Path, settings_hash: str, *, listed: bool = True,
                  limits: HeaderLimits | None = None,
                  stored: list[ImageRecord] | None = None) -> tuple[list[ImageUnit], list[ImageRecord], int]:
    """Split ``units`` into those to measure and the ``images`` rows of those already done;
    also returns how many of those to measure were done with other settings.

    Done means: an ``ok`` or ``indexed`` row under the image's id (location, content and
    HDU) whose ``settings_hash`` is ``settings_hash``; a row without one (written before
    rows recorded it) counts as other settings. Only files whose URI is in the ``images``
    table are fingerprinted (once per file, to check that their content is the one
    measured); a file never seen is simply to do. ``listed``: the units' HDUs are those
    :func:`images_to_measure` listed (None the first image HDU, an index a later one),
    else HDUs a person named, whose id needs a header walk. ``stored``: the ``images`` rows, when
    the caller read them already.
    """
    by_id = {r.image_id: r for r in (LocalTables(home).images() if stored is None else stored) if r.succeeded}
    if not by_id:
        return units, [], 0
    seen_uris = {r.uri for r in by_id.values()}
    fingerprints: dict[str, str] = {}
    todo, done, changed = [], [], 0
    for unit in units:
        uri, hdu = unit
        if uri not in seen_uris:
            todo.append(unit)
            continue
        try:
            if uri not in fingerprints:
                fingerprints[uri] = storage.fingerprint(uri)
            id_hdu = hdu if listed or hdu is None else image_id_hdu(walk_file(uri, hdu, limits=limits or HeaderLimits()))
            row = by_id.get(make_image_id(uri, fingerprints[uri], id_hdu))
        except (SkysiftError, OSError):
            todo.append(unit)
            continue
        if row is None:
            todo.append(unit)
        elif row.settings_hash != settings_hash:
            todo.append(unit)
            changed += 1
        else:
            done.append(row)
    return todo, done, changed


def _has_table_files(folder: Path) -> bool:
    """Whether a table's folder holds any Parquet file (a fresh home has none)."""
    return folder.is_dir() and next(folder.rglob("*.parquet"), None) is not None


def _upcoming(units: list[ImageUnit], index: int) -> str | None:
    return units[index][0] if index < len(units) else None


def _alerts_marker(home: Path, image_id: str) -> Path:
    return home / "alerts-evaluated" / image_id


#: Prefix of the folder (in the home) where a run's pool notes which image each worker measures.
#: Beyond the footprints' discs, the 'new source' rule also reads detections this far (deg).
HISTORY_MARGIN_DEG = 0.01


def run_local(uris: Iterable[str], settings: Settings, *, workers: int = 1, hdu: int | str | None = None,
              on_image: ProgressCallback | None = None, resume: bool = True,
              on_wait: Callable[[str], None] | None = None,
              on_plan: Callable[[int], None] | None = None, objects: bool = False) -> RunReport:
    """Process every image of every file (``hdu``: only that HDU of each), write the tables
    under ``settings.home``, raise alerts, report; with ``objects``, also recompute the objects
    the measured images touch (:class:`_ObjectsStep`, even when interrupted, as the images written stay).

    Holds the home's lock throughout (``on_wait`` gets the one-line message when
    another run holds it first, see :func:`~skysift.catalog.homelock.home_lock`). ``on_plan``
    gets the number of images to measure once the files are listed and the images
    already done are left out; ``on_image`` each image's summary as it finishes.
    """
    with home_lock(settings.home, on_wait=on_wait):
        _clean_after_killed_runs(Path(settings.home))
        return _run_locked(uris, settings, workers=workers, hdu=hdu, on_image=on_image, resume=resume, on_plan=on_plan,
                           objects=objects)


def _clean_after_killed_runs(home: Path) -> None:
    """Remove what a killed run left: temporary table files and its pool's notes.

    Only with the home's lock held: then no other writer exists, so every temporary
    file, however fresh, is an orphan.
    """
    removed = remove_orphan_temporaries(home, older_than_s=0.0)
    for folder in home.glob(f"{RUNNING_PREFIX}*"):
        forced.remove_sky_folder(folder)  # any folder; a skies' one may link to one in memory
    if removed:
        log.warning("removed %d temporary file(s) left by an interrupted writer", len(removed))


def _run_locked(uris: Iterable[str], settings: Settings, *, workers: int, hdu: int | str | None,
                on_image: ProgressCallback | None, resume: bool,
                on_plan: Callable[[int], None] | None = None, objects: bool = False) -> RunReport:
    t0 = time.perf_counter()
    home = Path(settings.home)
    uris = [storage.normalize_uri(u) for u in uris]
    own = {u for u in uris if storage.is_within(u, home)}
    if own:  # the home's cut-outs and tables are outputs, never inputs (no recursion)
        log.warning("%d file(s) inside the skysift home %s left out: a run never ingests its own outputs", len(own), home)
        uris = [u for u in uris if u not in own]
    limits = settings.limits.header_limits()
    listed = _listed_units(uris, hdu, limits)
    units = [image.unit for image in listed]
    stored = LocalTables(home).images() if resume or (workers > 1 and len(units) > 1) else []
    todo, finished_rows, changed = (_already_done(units, home, settings.measurement_hash(), listed=hdu is None,
                                                  limits=limits, stored=stored) if resume else (units, [], 0))
    if changed:
        log.info("%d image(s) done before with other measurement settings are measured again", changed)
    report = RunReport(skipped=len(finished_rows), remeasured_settings=changed)
    rows: list[ImageRecord] = list(finished_rows)
    if on_plan:
        on_plan(len(todo))
    # A single image gets every worker as tile workers; many images one worker each,
    # with an equal share of the memory budget.
    per_worker = settings.model_copy(update={"limits": settings.limits.model_copy(
        update={"max_memory_bytes": max(2**28, settings.limits.max_memory_bytes // max(1, workers))})})

    pooled = workers > 1 and len(todo) > 1
    header_seconds = {image.unit: image.seconds for image in listed}
    early = EarlyAlerts([header_seconds.get(unit) for unit in todo]) if pooled else None
    # an image the home had before may have sent alerts whose packets an early preparation would rewrite
    known = {r.image_id for r in stored}

    def done(i: int, outcome: Any, error: BaseException | None) -> list[tuple] | None:
        """One call of the run finished: an image measured (and then, in a pool, the images whose
        alerts it lets the pool prepare now), or the alerts of one prepared while measuring."""
        if i >= len(todo):
            early.prepared(i - len(todo), outcome, error)
            return None
        summary, row = outcome if error is None else _record_failure(*todo[i], error, settings)
        report.summaries.append(summary)
        rows.append(row)
        if on_image:
            on_image(summary)
        if early is None:
            return None
        return [(_prepare_alerts_early, ready, settings)
                for ready in early.measured(i, row, preparable=row.image_id not in known)]

    overlapped = _overlapped(listed, settings)
    # a pool prepares alerts while it measures, reading the skies of earlier images like the alert phase
    with _skies_folder(home) if overlapped or pooled else nullcontext() as skies:
        def keep(unit: ImageUnit) -> str | None:
            return skies if unit in overlapped else None

        try:
            if not pooled:
                for i, (uri, image_hdu) in enumerate(todo):
                    try:
                        outcome, error = _measure_and_write(uri, settings, image_hdu, workers, _upcoming(todo, i + 1),
                                                            keep((uri, image_hdu))), None
                    except Exception as exc:  # e.g. the rows could not be written: this image fails, the run goes on
                        outcome, error = None, exc
                    done(i, outcome, error)
            else:
                # tasks start in order: the worker on image i reads ahead the one starting after i's peers
                calls = [(_measure_and_write, uri, per_worker, image_hdu, 1, _upcoming(todo, i + workers),
                          keep((uri, image_hdu))) for i, (uri, image_hdu) in enumerate(todo)]
                run_surviving(operator.call, calls, workers, done, initializer=_start_measuring_worker,
                              initargs=(settings.home, skies, _large_frames(listed, todo)), scratch=home)
        except KeyboardInterrupt:
            report.interrupted = True
            log.warning("interrupted: %d images finished; run again to resume", len(report.summaries))
        step = _ObjectsStep(settings, [s.image_id for s in report.summaries], beside=pooled) if objects else None
        try:
            if not report.interrupted:
                t_alerts = time.perf_counter()
                _raise_alerts_in_time_order(rows, report, settings, workers, skies, early.standing() if early else None)
                report.alerts_seconds = time.perf_counter() - t_alerts
        finally:
            if step is not None:
                report.objects, report.objects_error = step.finish()
    report.seconds = time.perf_counter() - t0
    report.report_path = _write_report(home, report)
    return report


class _ObjectsStep:
    """The objects that ``image_ids`` touch, recomputed (:func:`~skysift.catalog.objects.update_objects`).

    ``beside``: after a pool's measuring, in a process of its own started now
    (:class:`~skysift.parallel.pools.Alone`), while this one raises the alerts: the two read
    and write different tables, and the alert phase would otherwise leave a core idle (64 x 2048^2:
    the objects step 0.45 s, the alert phase 0.28 s). Else in this process, when finished.
    """

    def __init__(self, settings: Settings, image_ids: list[str], *, beside: bool) -> None:
        self._args = (settings.home, image_ids, settings.objects.radius_arcsec)
        self._alone = Alone(_update_objects, self._args, died=_objects_process_died) if beside else None

    def finish(self) -> tuple[ObjectsReport | None, BaseException | None]:
        """What the step updated, or the exception that stopped it."""
        if self._alone is not None:
            return self._alone.outcome()
        try:
            return _update_objects(*self._args), None
        except Exception as exc:
            return None, exc


def _update_objects(home: str, image_ids: list[str], radius_arcsec: float) -> ObjectsReport:
    return update_objects(home, image_ids, radius_arcsec=radius_arcsec)


def _objects_process_died(exitcode: int | None) -> str:
    return f"the process updating the objects {how_it_ended(exitcode)}"


@contextmanager
def _skies_folder(home: Path) -> Iterator[str]:
    """The run's folder of skies for forced photometry (:func:`skysift.alerts.forced.sky_cache`), in
    memory when there is room: filled by the measuring of images others overlap, then by the alert
    phase; removed after the run, or by the next run when this one is killed (:func:`_clean_after_killed_runs`)."""
    with (tempfile.TemporaryDirectory(prefix=f"{RUNNING_PREFIX}skies-", dir=home) as anchor,
          forced.sky_folder(anchor) as skies):
        yield skies


def _raise_alerts_in_time_order(rows: list[ImageRecord], report: RunReport, settings: Settings, workers: int,
                                skies: str | None = None, prepared: dict[str, _PreparedEarly] | None = None) -> None:
    """Alerts of every ``ok`` image of the home not evaluated against the earlier images
    it has now, delivered in order of observation time.

    ``rows`` are this run's images (as measured); the home's other images come from the
    tables. Every image's rows are written by now, so each image's alerts (which read the
    tables and earlier images' pixels, and store cutouts named by alert_id) are prepared
    in parallel; delivery is in order. An image whose alerts fail (to prepare or to
    deliver) is logged and listed in ``report.alert_failures``, is not marked as
    evaluated (the next run tries it again), and the other images' alerts go on. ``skies``
    is the run's folder of skies (:func:`_skies_folder`) when its measuring made one; ``prepared``
    the alerts its measuring pool prepared that stand (:meth:`~skysift.pipeline.early_alerts.EarlyAlerts.standing`),
    used when the earlier images they saw are those the tables now hold.
    """
    home = Path(settings.home)
    store, publisher = LocalTables(home), LogPublisher(home)
    by_id = {s.image_id: s for s in report.summaries}
    stored = store.images()
    history = _SkyHistory(stored)
    candidates = {r.image_id: r for r in stored if r.status is ImageStatus.OK}
    candidates.update({r.image_id: r for r in rows if r.status is ImageStatus.OK})  # this run's, as measured
    ordered = sorted(candidates.values(), key=lambda r: (posix_seconds(r.obs_time) is None, posix_seconds(r.obs_time) or 0.0,
                                                         r.uri or ""))
    pending, earlier, reopened = [], [], 0
    for row in ordered:
        against = history.earlier_ids(row)
        decided = _evaluated_against(home, row.image_id)
        if decided != against:
            pending.append(row)
            earlier.append(against)
            reopened += decided is not None
    if reopened:
        log.info("%d image(s) evaluated again: an earlier image of their sky arrived since their alerts were decided", reopened)
    if not pending:
        return
    deliver = _InOrderDelivery(pending, earlier, store, publisher, by_id, settings, report)
    offered = {i: prepared[row.image_id] for i, row in enumerate(pending) if row.image_id in (prepared or {})}
    usable = {i: early.alerts for i, early in offered.items() if early.earlier == earlier[i]}
    if len(usable) < len(offered):
        log.debug("%d image(s) prepared while measuring saw other earlier images than the tables hold now: "
                  "prepared again", len(offered) - len(usable))
    for i, alerts in usable.items():
        deliver(i, alerts, None)
    rest = [i for i in range(len(pending)) if i not in usable]
    if not rest:
        return
    # the skies of earlier images read whole for forced photometry: kept by their measuring, or
    # computed once for the whole phase (every later image of a field asks again)
    with nullcontext(skies) if skies else _skies_folder(home) as folder, forced.sky_cache(folder):
        if workers > 1 and _worth_a_pool([earlier[i] for i in rest]):
            run_surviving(_prepare_alerts, [(pending[i], settings) for i in rest], workers,
                          lambda k, alerts, error: deliver(rest[k], alerts, error),
                          initializer=_open_worker_store, initargs=(settings.home, folder), scratch=home)
        else:
            for i in rest:
                try:
                    alerts, error = _prepare_alerts(pending[i], settings, store), None
                except Exception as exc:
                    alerts, error = None, exc
                deliver(i, alerts, error)


def _worth_a_pool(earlier: list[list[str]]) -> bool:
    """Whether the alert phase's images are prepared in a pool of workers rather than in this process.

    An image with earlier images of its sky reads their pixels and measures forced photometry
    (most of a survey's alert phase); one without reads only its own rows. A pool costs a fork,
    a store per worker and a pickle per image: for 16 such images it took 0.37 s against 0.22 s
    in this process, so it is used when at least two images have earlier ones.
    """
    return sum(1 for ids in earlier if ids) >= 2


_worker_store: LocalTables | None = None


def _open_worker_store(home: Path, skies: str | None = None) -> None:
    """Pool initializer: one store per worker process, so its file caches serve every image,
    and the alert phase's folder of earlier skies (:func:`skysift.alerts.forced.sky_cache`)."""
    global _worker_store
    _worker_store = LocalTables(home)
    forced.use_sky_cache(skies)


def _start_measuring_worker(home: Path, skies: str | None = None, large_frames: bool = False) -> None:
    """Pool initializer of the measuring pool, whose workers measure one whole frame after another:
    with ``large_frames`` (:func:`_large_frames`) the C library keeps their frames' memory for the
    next (:func:`~skysift.heap.keep_frames_heap`); :func:`_open_worker_store`."""
    if large_frames:
        keep_frames_heap()
    _open_worker_store(home, skies)


def _prepare_alerts(row: ImageRecord, settings: Settings, store: LocalTables | None = None) -> list[dict]:
    store = store or _worker_store
    return prepare_alerts(row, store.read_sources(row), store, settings.alerts, settings.background, objects=settings.objects)


@dataclass(frozen=True)
class _PreparedEarly:
    """An image's alerts prepared by the measuring pool, and the earlier images of its sky when
    the preparation started (:meth:`_SkyHistory.earlier_ids`)."""

    earlier: list[str]
    alerts: list[dict]


def _prepare_alerts_early(row: ImageRecord, settings: Settings) -> _PreparedEarly:
    """:func:`_prepare_alerts` in a measuring worker, noting which earlier images the tables held."""
    earlier = _SkyHistory(_worker_store.images()).earlier_ids(row)
    return _PreparedEarly(earlier, _prepare_alerts(row, settings))


class _SkyHistory:
    """The ``ok`` images of the tables that reach each image's sky earlier than it:
    what its 'new source' decision rests on (a superset of what the rule reads)."""

    def __init__(self, rows: list[ImageRecord]) -> None:
        placed = [(r, posix_seconds(r.obs_time)) for r in rows if r.status is ImageStatus.OK]
        placed = [(r, t) for r, t in placed if t is not None and _finite(r.center_ra) and _finite(r.center_dec)]
        placed.sort(key=lambda item: item[1])  # oldest first: the images earlier than t are a prefix
        self.ids = np.array([r.image_id for r, _ in placed], dtype=object)
        self.time = np.array([t for _, t in placed], dtype=float)
        self.ra = np.array([float(r.center_ra) for r, _ in placed])
        self.dec = np.array([float(r.center_dec) for r, _ in placed])
        self.radius = np.array([float(r.radius_deg or 0.0) for r, _ in placed])

    def earlier_ids(self, row: ImageRecord) -> list[str]:
        """Sorted image_ids of the images observed before ``row`` whose footprint reaches its own."""
        when = posix_seconds(row.obs_time)
        if when is None or not (_finite(row.center_ra) and _finite(row.center_dec)):
            return []
        n = int(np.searchsorted(self.time, when, side="left"))
        if n == 0:
            return []
        distance = angular_distance_deg(self.ra[:n], self.dec[:n], float(row.center_ra), float(row.center_dec))
        reach = self.radius[:n] + float(row.radius_deg or 0.0) + HISTORY_MARGIN_DEG
        return sorted(self.ids[:n][distance <= reach].tolist())


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and bool(np.isfinite(value))


def _evaluated_against(home: Path, image_id: str) -> list[str] | None:
    """The earlier images an image's alerts were decided against; None if never decided
    (no marker, a marker cut short by a crash, or one from before markers said it)."""
    try:
        return json.loads(_alerts_marker(home, image_id).read_text())["earlier_images"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


class _InOrderDelivery:
    """A :data:`~skysift.parallel.pools.DoneCallback` that delivers prepared alerts in the rows' order, whatever order
    they were prepared in, and records an image whose alerts failed instead of stopping.

    ``earlier[i]`` are the earlier images ``rows[i]`` is decided against, written into its
    marker once its alerts are delivered.
    """

    def __init__(self, rows: list[ImageRecord], earlier: list[list[str]], store: LocalTables, publisher: LogPublisher,
                 by_id: dict[str, ImageSummary], settings: Settings, report: RunReport) -> None:
        self.rows, self.earlier, self.store, self.publisher = rows, earlier, store, publisher
        self.by_id, self.home, self.report = by_id, Path(settings.home), report
        self.ready: dict[int, tuple[list[dict] | None, BaseException | None]] = {}
        self.next = 0

    def __call__(self, index: int, alerts: list[dict] | None, error: BaseException | None) -> None:
        self.ready[index] = (alerts, error)
        while self.next in self.ready:
            alerts, error = self.ready.pop(self.next)
            self._deliver(self.rows[self.next], self.earlier[self.next], alerts, error)
            self.next += 1

    def _deliver(self, row: ImageRecord, earlier: list[str], alerts: list[dict] | None, error: BaseException | None) -> None:
        try:
            if error is not None:
                raise error
            unsent = sum(not self.publisher.was_sent(a["alert_id"]) for a in alerts)
            sent = deliver_alerts(row, alerts + self._sent_before(row, alerts), self.store, self.publisher)
        except Exception as exc:
            failure = exc if isinstance(exc, SkysiftError) else InternalError.from_exception(exc, uri=row.uri)
            log.warning("%s: alerts not evaluated (%s: %s); the next run tries again", row.uri, failure.reason, failure.message)
            self.report.alert_failures.append({"uri": row.uri, "image_id": row.image_id, "reason": failure.reason,
                                               "message": failure.message})
            return
        marker = _alerts_marker(self.home, row.image_id)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"earlier_images": earlier}))
        if row.image_id in self.by_id:
            self.by_id[row.image_id].n_alerts = len(sent)
        else:  # an image of an earlier run, evaluated again
            self.report.reopened_alerts += unsent

    def _sent_before(self, row: ImageRecord, alerts: list[dict]) -> list[dict]:
        """The stored alerts of this image that were sent and that this evaluation no longer
        raises (an earlier image arrived since): sent cannot be unsent, so their rows stay."""
        now = {a["alert_id"] for a in alerts}
        return [a for a in rows_of(self.store.read_alerts(row))
                if a["alert_id"] not in now and self.publisher.was_sent(a["alert_id"])]


def _write_report(home: Path, report: RunReport) -> str:
    folder = home / "runs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"run-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}.json"
    path.write_text(json.dumps(report.to_dict(), indent=2, default=str))
    return str(path)
