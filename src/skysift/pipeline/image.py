"""One image end to end: read, measure, and shape the rows of the three tables.

:func:`process_image` is pure science and returns an :class:`ImageResult`;
:func:`ingest_image` adds the idempotent effects (catalog write, alerts) through
the :mod:`skysift.catalog.ports` protocols. The CLI, the Lambda handlers and the Batch
container all call these same functions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

import numpy as np
import pyarrow as pa
from astropy.io import fits

from skysift import __version__
from skysift.alerts.delivery import raise_alerts
from skysift.catalog.arrow import numpy_column, numpy_values, repeated_timestamp
from skysift.catalog.ports import AlertPublisher, CatalogStore
from skysift.catalog.records import ImageRecord, ImageStatus, Route, WcsStatus
from skysift.catalog.schema import sources_schema
from skysift.errors import ChecksumMismatch, InternalError, SkysiftError, WorkerDied
from skysift.io import storage
from skysift.io.fits import (
    ImageInfo,
    build_wcs,
    inspect_image,
    inspect_with_header,
    make_image_id,
    read_image,
    refuse_bad_checksum,
    view_header,
    with_streamed_checksum,
)
from skysift.io.fitsheader import ChecksumStatus
from skysift.measure.frame import measure_image
from skysift.measure.tiled import measure_tiled
from skysift.pipeline.router import choose_route, in_memory_pixel_limit
from skysift.settings import Settings

#: Gets an image read whole (its :class:`~skysift.io.fits.ImageInfo`) and then what a
#: :data:`~skysift.measure.frame.SkySink` gets: its sky-subtracted pixels, noise map and mask.
ImageSkySink = Callable[[ImageInfo, np.ndarray, np.ndarray, np.ndarray | None], None]

__all__ = [
    "ImageResult",
    "ImageSkySink",
    "ImageSummary",
    "failed_result",
    "image_record",
    "ingest_image",
    "process_image",
    "record",
    "sources_table",
    "summarize",
    "top_sources",
]

log = logging.getLogger(__name__)


@dataclass
class ImageResult:
    """Rows for the ``images`` table (one, its :class:`ImageRecord`) and the ``sources`` table (many)."""

    record: ImageRecord
    sources: pa.Table | None = None
    info: ImageInfo | None = None
    error: SkysiftError | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def image_id(self) -> str:
        return self.record.image_id

    @property
    def partition(self) -> dict[str, str]:
        return self.record.partition

    @property
    def ok(self) -> bool:
        return self.error is None


def _info_columns(info: ImageInfo) -> dict:
    return {
        "image_id": info.image_id, "uri": info.uri, "content_hash": info.content_hash,
        "hdu": info.hdu, "hdu_name": info.hdu_name, "nx": info.nx, "ny": info.ny,
        "bytes": info.bytes, "bitpix": info.bitpix, "compressed": info.compressed,
        "wcs_kind": info.wcs_kind, "checksum_status": info.checksum_status, "telescope": info.telescope, "instrument": info.instrument,
        "wavelength_angstrom": info.wavelength_angstrom, "obs_time": info.obs_time,
        "exptime_s": info.exptime_s, "survey": info.survey, "band": info.band, "obs_night": info.obs_night,
    }


def image_record(info: ImageInfo | None, *, status: ImageStatus, route: Route, uri: str | None = None,
                 error: SkysiftError | None = None, hdu: int | str | None = None, **values) -> ImageRecord:
    """The ``images`` row of one image: what ``info`` says, the error, ``values`` (measurements).

    Without ``info`` (the header could not be read) the record has the URI and an image_id
    from the file's bytes and the ``hdu`` asked for (see :func:`_unread_image_id`). An
    image refused for its checksum (reason ``bad_checksum``) has ``checksum_status`` =
    'bad' whoever writes its row (the in-memory read stops before describing the image,
    and the AWS Quarantine step has only the Inspect step's header-only description).
    ``values`` that are not columns (timings such as ``catalog_s``, the tiled path's
    ``n_tiles``) are left out.
    """
    row: dict = _info_columns(info) if info is not None else {"uri": uri, "image_id": _unread_image_id(uri, hdu)}
    if error is not None:
        row.update(error_reason=error.reason, error_message=error.message)
        if error.reason == ChecksumMismatch.reason:
            row.update(checksum_status=ChecksumStatus.BAD)
    row.update((key, value) for key, value in values.items() if key in ImageRecord.model_fields)
    row.update(status=status, route=route, processed_at=datetime.now(UTC), software_version=__version__)
    return ImageRecord.model_validate(row)


def _unread_image_id(uri: str | None, hdu: int | str | None = None) -> str:
    """image_id of an image whose header could not be read: from the file's bytes if they
    exist at all, and the HDU asked for (None: the file's first image, whose id is the
    file version's). A later image HDU of a damaged file so never takes the id, and
    replaces the rows, of the images before it."""
    try:
        content = storage.fingerprint(uri)
    except (SkysiftError, OSError, ValueError, TypeError):
        content = "unreadable"
    return make_image_id(str(uri), content, hdu)


def sources_table(info: ImageInfo, columns: dict[str, np.ndarray], settings: Settings) -> pa.Table:
    """The ``sources`` rows of one image as an Arrow table with the documented schema."""
    schema = sources_schema(len(settings.photometry.aperture_radii_px))
    n = len(columns["x"])
    image_id = info.image_id
    data = dict(columns)
    data["image_id"] = np.full(n, image_id, dtype=object)
    data["source_num"] = np.arange(n, dtype=np.int32)
    data["source_id"] = np.array([f"{image_id}:{i}" for i in range(n)], dtype=object)
    data["obs_time"] = repeated_timestamp(info.obs_time, n, schema.field("obs_time").type)
    arrays = [value if isinstance(value := data[f.name], pa.Array) else numpy_column(value, f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def _failed(uri: str, route: Route, exc: SkysiftError, info: ImageInfo | None = None, hdu: int | str | None = None,
            **values) -> ImageResult:
    exc.uri = exc.uri or str(uri)
    log.warning("%s", exc)
    record = image_record(info, status=ImageStatus.FAILED, route=route, uri=str(uri), error=exc, hdu=hdu, **values)
    return ImageResult(record, info=info, error=exc)


def failed_result(uri: str, error: SkysiftError, *, route: Route = Route.LOCAL, hdu: int | str | None = None,
                  survey_default: str | None = None, read_header: bool = True) -> ImageResult:
    """The ``failed`` result of an image whose processing broke off with ``error``.

    With ``read_header`` its header is read again (cheap, and bounded) so that the row
    still carries the image's survey, band and night when the header is readable;
    otherwise, or when it is not, the row has the URI and a content-based image_id only.
    """
    info = None
    if read_header:
        try:
            info = inspect_image(uri, hdu, survey_default=survey_default)
        except Exception:  # the header may be the very thing that broke
            info = None
    return _failed(uri, route, error, info, hdu)


def _indexed(info: ImageInfo, header, wcs, t0: float, **values) -> ImageResult:
    record = image_record(info, status=ImageStatus.INDEXED, route=Route.INDEX_ONLY, total_s=time.perf_counter() - t0,
                          wcs_header=_wcs_text(header, wcs), wcs_status=WcsStatus.NONE, **values)
    return ImageResult(record, info=info)


def _measured(info: ImageInfo, header, wcs, result, settings: Settings, route: Route, t0: float, read_s: float) -> ImageResult:
    table = sources_table(info, result.columns, settings)
    timings = {"read_s": read_s, **result.timings, "total_s": time.perf_counter() - t0}
    trusted = result.stats.get("wcs_status") == WcsStatus.VALID  # an untrusted WCS is not kept for reuse
    record = image_record(info, status=ImageStatus.OK, route=route, wcs_header=_wcs_text(header, wcs) if trusted else None,
                          **result.stats, **timings)
    return ImageResult(record, sources=table, info=info, timings=timings)


def process_image(uri: str, settings: Settings, *, hdu: int | str | None = None, route: Route | str | None = None,
                  workers: int = 1, on_sky: ImageSkySink | None = None) -> ImageResult:
    """Read and measure one image; never raises, whatever the input or the fault.

    ``hdu`` picks one image HDU of the file (index or EXTNAME; None: the first image HDU);
    every image HDU is an image of its own, with its own image_id
    (:func:`~skysift.io.fits.make_image_id`). The header is read first and the router
    (:func:`~skysift.pipeline.router.choose_route`, given ``route`` when a caller chose one
    already) sends the image one of three ways before any pixel is read: a solar image is
    indexed from its header (its pixels are never decoded); one within
    :func:`~skysift.pipeline.router.in_memory_pixel_limit` is read whole; a larger one is
    measured tile by tile in bounded memory, with ``workers`` processes. Returns an
    :class:`ImageResult` whose ``record`` has status ``ok`` (sources measured; if the
    header names sky axes but its WCS cannot be trusted, with null sky positions and
    ``wcs_status`` = 'wcs_invalid'; without celestial axes, a pixel catalog with null sky
    positions and ``wcs_status`` = 'none'), ``indexed`` (helioprojective: indexed, not
    extracted, see :func:`~skysift.pipeline.router.is_catalogued`) or ``failed`` (``error``
    holds the typed error and its reason). Every row records ``settings_hash``
    (:meth:`~skysift.settings.Settings.measurement_hash`), which resuming runs compare.
    ``on_sky`` gets the image's description and its sky-subtracted frame when it is read
    whole (:data:`ImageSkySink`; a tiled image has no whole frame).

    Known causes fail with their typed reason; any other exception (a bug, a library's
    edge case, memory exhausted) fails the image with reason ``internal_error``, the
    exception's class, message and a traceback digest, so that one image can never stop
    a run. Only ``KeyboardInterrupt`` and ``SystemExit`` pass through.
    """
    requested = Route(route) if route is not None else None
    failed_route = requested or Route.LOCAL
    try:
        result = _process_image(uri, settings, hdu=hdu, requested=requested, workers=workers, on_sky=on_sky)
    except SkysiftError as exc:  # a typed error from a step that does not catch its own
        result = failed_result(uri, exc, route=failed_route, hdu=hdu, survey_default=settings.survey)
    except BrokenProcessPool as exc:  # a tile or strip process was killed (out of memory?)
        died = WorkerDied(f"a process measuring part of this image died ({exc}): give it more memory "
                          "(--max-memory, fewer workers with -j) or check the file", uri=str(uri))
        result = failed_result(uri, died, route=failed_route, hdu=hdu, survey_default=settings.survey)
    except Exception as exc:  # the point: no exception escapes one image
        log.debug("internal error while processing %s", uri, exc_info=True)
        error = InternalError.from_exception(exc, uri=str(uri))
        result = failed_result(uri, error, route=failed_route, hdu=hdu, survey_default=settings.survey)
    result.record = result.record.replace(settings_hash=settings.measurement_hash())
    return result


def _process_image(uri: str, settings: Settings, *, hdu: int | str | None, requested: Route | None,
                   workers: int, on_sky: ImageSkySink | None) -> ImageResult:
    t0 = time.perf_counter()
    limits = settings.limits.header_limits()
    try:
        view = view_header(uri, hdu, limits=limits)
    except SkysiftError as exc:
        return _failed(uri, requested or Route.LOCAL, exc, None, hdu)
    route = choose_route(view, settings, requested=requested)
    if route.in_memory:
        return _process_in_memory(uri, hdu, settings, route, workers, t0, on_sky)
    info = None
    try:  # the header again, described in full, and the checksum by streaming the data unit
        info, header = inspect_with_header(uri, hdu, survey_default=settings.survey, limits=limits)
        info = with_streamed_checksum(info, limits=limits)
        refuse_bad_checksum(info.checksum_status, info.uri, settings.limits.reject_bad_checksum)
    except SkysiftError as exc:
        return _failed(uri, route, exc, info, hdu)
    if route is Route.INDEX_ONLY:
        return _indexed(info, header, build_wcs(header), t0, read_s=time.perf_counter() - t0)
    return _process_tiled(info, header, settings, workers, t0)


def _process_in_memory(uri: str, hdu: int | str | None, settings: Settings, route: Route, workers: int,
                       t0: float, on_sky: ImageSkySink | None = None) -> ImageResult:
    """The in-memory path: pixels read and verified whole (the content hash computed meanwhile)."""
    try:
        image = read_image(uri, hdu, max_pixels=in_memory_pixel_limit(settings), survey_default=settings.survey,
                           limits=settings.limits.header_limits(),
                           reject_bad_checksum=settings.limits.reject_bad_checksum)
    except SkysiftError as exc:  # the read stops before it describes the image: its row has the URI and id
        return _failed(uri, route, exc, None, hdu)
    read_s = time.perf_counter() - t0
    info = image.info
    try:
        result = measure_image(image, settings, workers=workers,
                               on_sky=None if on_sky is None else partial(on_sky, info))
    except SkysiftError as exc:
        return _failed(info.uri, route, exc, info, read_s=read_s)
    return _measured(info, image.header, image.wcs, result, settings, route, t0, read_s)


def _process_tiled(info: ImageInfo, header: fits.Header, settings: Settings, workers: int, t0: float) -> ImageResult:
    """The large-image path: header known and checksum verified (by streaming the data unit once,
    :func:`~skysift.io.fits.with_streamed_checksum`, so that this path records the ``checksum_status``
    the in-memory one does, and refuses a bad one with the same reason before any tile is read when
    ``limits.reject_bad_checksum`` says so); pixels read tile by tile."""
    try:
        info, result, header = measure_tiled(info.uri, settings, workers=workers, inspected=(info, header))
    except SkysiftError as exc:
        return _failed(info.uri, Route.LARGE, exc, info)
    return _measured(info, header, build_wcs(header), result, settings, Route.LARGE, t0, 0.0)


def _wcs_text(header, wcs) -> str | None:
    if wcs is None:
        # keep helioprojective and other WCS keywords for the solar index
        keys = [k for k in header if k.startswith(("CTYPE", "CRVAL", "CRPIX", "CDELT", "CUNIT", "PC", "CROTA", "RSUN", "DSUN", "HGLN", "HGLT", "DATE-OBS"))]
        return "\n".join(header.cards[k].image for k in keys) or None
    return wcs.to_header(relax=True).tostring(sep="\n")


@dataclass
class ImageSummary:
    """What one image's ingestion did: small enough for a Step Functions payload."""

    image_id: str
    uri: str | None
    status: ImageStatus
    route: Route
    hdu: int | None = None  # index of the image HDU (None when the header could not be read)
    hdu_name: str | None = None
    n_sources: int = 0
    n_alerts: int = 0
    reason: str | None = None
    message: str | None = None
    pointers: dict[str, str] = field(default_factory=dict)
    top_sources: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def to_state(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


def top_sources(sources: pa.Table | None, n: int = 5) -> list[dict]:
    """The ``n`` most significant sources, as small dicts (never the whole catalog)."""
    if sources is None or sources.num_rows == 0:
        return []
    order = np.argsort(-numpy_values(sources["snr"]))[:n]
    picked = sources.select(["source_id", "ra", "dec", "snr", "flux", "mag_ab", "star_score"]).take(numpy_column(order, pa.int64()))
    return [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()} for r in picked.to_pylist()]


def record(result: ImageResult, store: CatalogStore) -> dict[str, str]:
    """Write one result's rows (idempotent), and its failure record when it failed."""
    pointers = store.write_image(result.record, result.sources)
    if result.error is not None:
        pointers["quarantine"] = store.record_failure(result.record, result.error.to_record())
    return pointers


def summarize(result: ImageResult, pointers: dict[str, str], n_alerts: int = 0) -> ImageSummary:
    record = result.record
    return ImageSummary(
        image_id=record.image_id, uri=record.uri, status=record.status, route=record.route,
        hdu=record.hdu, hdu_name=record.hdu_name, n_sources=int(record.n_sources or 0), n_alerts=n_alerts,
        reason=record.error_reason, message=record.error_message, pointers=pointers,
        top_sources=top_sources(result.sources), seconds=float(record.total_s or 0.0),
    )


def ingest_image(uri: str, settings: Settings, *, store: CatalogStore, publisher: AlertPublisher,
                 hdu: int | str | None = None, route: Route | str | None = None) -> ImageSummary:
    """Process one image and make its effects: rows written, alerts raised and published.

    Every effect is idempotent (rows replace by image_id, alerts send once per
    alert_id), so a duplicate event or a re-run changes nothing.
    """
    result = process_image(uri, settings, hdu=hdu, route=route)
    pointers = record(result, store)
    alerts = []
    if result.ok and result.sources is not None:
        alerts = raise_alerts(result.record, result.sources, store, publisher, settings.alerts, settings.background,
                              objects=settings.objects)
    return summarize(result, pointers, len(alerts))
