"""The time-lag pipeline: index search -> eager headers -> lazy frames -> cube -> lag map.

Everything after the headers is a dask graph, so it runs unchanged on the threaded
scheduler, a local ``dask.distributed`` cluster or a remote one:

1. each channel's frames are found in the images index (:mod:`.index`), or among
   frames named directly (:mod:`.sources`: URLs, paths, a CloudCatalog search);
2. their headers are read eagerly (in parallel, on the cluster's workers), and the
   cutout is checked to lie on the disk inside the reference frame;
3. per frame, three delayed tasks read only the needed rectangle, divide by the
   exposure time (DN -> DN/s) and reproject onto the reference cutout following
   differential rotation (:mod:`.align`);
4. the frames are stacked, rechunked to whole-time spatial tiles and interpolated
   onto a common time grid (:mod:`.cube`);
5. each tile's lag and peak correlation are computed (:mod:`.lag`).

Remote frames are read with the request's ``storage_options`` (``{"anon": True}``
for public buckets), passed to every read task.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
from astropy.io import fits

from skysift.timelag.align import (
    ROTATION_MODEL,
    check_cutout_in_field,
    cutout_header,
    reproject_frame,
    source_bbox,
)
from skysift.timelag.cube import TILE_PX, Interpolation, stack_on_grid, time_grid
from skysift.timelag.errors import EmptyLagMap, SeriesTooShort
from skysift.timelag.frames import frame_exposure_s, normalise_exposure, read_frame, read_header
from skysift.timelag.index import IndexBackend, SeriesQuery, open_index, require_series
from skysift.timelag.lag import lag_tile
from skysift.timelag.output import LagMaps, write_outputs
from skysift.timelag.request import TimeLagRequest
from skysift.timelag.sources import FrameList

__all__ = [
    "GAP_WARNING_STEPS",
    "Channel",
    "LagPlan",
    "aligned_frames",
    "find_channel",
    "find_series",
    "maps_from",
    "plan_cubes",
    "plan_request",
    "plan_timelag",
    "prepare",
    "reference_header",
    "run_timelag",
    "series_source",
]

if TYPE_CHECKING:
    from distributed import Client, Future

log = logging.getLogger(__name__)

#: Warn when interpolation bridges a gap between frames longer than this many grid steps.
GAP_WARNING_STEPS = 3


@dataclass(frozen=True)
class Channel:
    """One channel's frames: index rows, headers, times (s from the reference) and exposures (s)."""

    wavelength_angstrom: float
    table: pd.DataFrame
    headers: list[fits.Header]
    times_s: np.ndarray
    exptimes_s: np.ndarray
    #: fsspec options for reading the frames' pixels, e.g. ``{"anon": True}``
    storage_options: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.table)


def series_source(request: TimeLagRequest) -> IndexBackend:
    """Where the request's frames are found: the frames it names (headers read now), or its index."""
    if request.frames is not None:
        return FrameList(request.frames, request.storage_options, window=(request.start, request.end))
    return open_index(request.index)


def find_series(index: IndexBackend, request: TimeLagRequest) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both channels' frames from the index (no pixels, no cluster needed).

    Raises :class:`SeriesNotFound` before any work starts when a channel has fewer than two frames.
    """
    tables = [require_series(index, SeriesQuery(request.start, request.end, w, instrument=request.instrument), 2)
              for w in (request.channel_a, request.channel_b)]
    return tables[0], tables[1]


def find_channel(index: IndexBackend, request: TimeLagRequest, wavelength_angstrom: float,
                 table: pd.DataFrame | None = None) -> Channel:
    """One channel's frames (``table`` if already searched) with headers read eagerly on the active scheduler.

    A :class:`~skysift.timelag.sources.FrameList` already holds the headers: they are not read again.
    """
    if table is None:
        query = SeriesQuery(request.start, request.end, wavelength_angstrom, instrument=request.instrument)
        table = require_series(index, query, min_frames=2)
    options = request.storage_options
    if isinstance(index, FrameList):
        headers = [index.header(uri, int(hdu)) for uri, hdu in zip(table.uri, table.hdu, strict=True)]
    else:
        reads = [dask.delayed(read_header, pure=True)(uri, int(hdu), options or None)
                 for uri, hdu in zip(table.uri, table.hdu, strict=True)]
        headers = list(dask.compute(*reads))
    exptimes = np.array([frame_exposure_s(h, uri) for h, uri in zip(headers, table.uri, strict=True)])
    origin = pd.Timestamp(request.reference_time or request.start)
    times_s = ((table.obs_time - origin) / pd.Timedelta(seconds=1)).to_numpy(dtype=np.float64)
    log.info("channel %g A: %d frames", wavelength_angstrom, len(table))
    return Channel(float(wavelength_angstrom), table, headers, times_s, exptimes, dict(options))


def reference_header(channel: Channel) -> fits.Header:
    """Header of the channel frame nearest the reference time (t = 0)."""
    return channel.headers[int(np.argmin(np.abs(channel.times_s)))]


def aligned_frames(channel: Channel, target: fits.Header) -> list[da.Array]:
    """Lazy (ny, nx) float32 frames of ``channel`` on the cutout ``target``, in DN/s.

    Each frame is a chain of delayed tasks: bounding box -> read -> normalise -> reproject.
    """
    shape = (int(target["NAXIS2"]), int(target["NAXIS1"]))
    target_d = dask.delayed(target, pure=True)
    options = channel.storage_options or None
    out = []
    for uri, hdu, header, exptime in zip(channel.table.uri, channel.table.hdu, channel.headers, channel.exptimes_s, strict=True):
        header_d = dask.delayed(header, pure=True)  # one copy in the graph, used by two tasks
        bbox = dask.delayed(source_bbox, pure=True)(header_d, target_d)
        frame = dask.delayed(read_frame, pure=True)(uri, int(hdu), header_d, bbox, options)
        normalised = dask.delayed(normalise_exposure, pure=True)(frame, float(exptime))
        aligned = dask.delayed(reproject_frame, pure=True)(normalised, target_d)
        out.append(da.from_delayed(aligned, shape=shape, dtype=np.float32))
    return out


def plan_cubes(a: Channel, b: Channel, target: fits.Header, cadence_s: float,
               tile_px: int = TILE_PX) -> tuple[da.Array, da.Array, np.ndarray]:
    """Lazy (n_grid, ny, nx) cubes of both channels in DN/s on the cutout, and the grid (s)."""
    grid = time_grid(a.times_s, b.times_s, cadence_s)
    for channel in (a, b):
        gap_s = Interpolation.between(channel.times_s, grid).max_gap_s
        if gap_s > GAP_WARNING_STEPS * cadence_s:
            log.warning("channel %g A: the time grid bridges a %.0f s gap between frames by linear interpolation",
                        channel.wavelength_angstrom, gap_s)
    cube_a = stack_on_grid(aligned_frames(a, target), a.times_s, grid, tile_px)
    cube_b = stack_on_grid(aligned_frames(b, target), b.times_s, grid, tile_px)
    return cube_a, cube_b, grid


@dataclass(frozen=True)
class LagPlan:
    """The lazy result: lag (s) and peak correlation maps on the cutout, with their grid."""

    lag_s: da.Array
    peak: da.Array
    target: fits.Header
    grid_s: np.ndarray
    cadence_s: float
    max_lag_s: float
    n_frames: tuple[int, int]


def plan_timelag(a: Channel, b: Channel, target: fits.Header, cadence_s: float, max_lag_s: float,
                 tile_px: int = TILE_PX) -> LagPlan:
    """Build the whole lazy graph from two channels and the cutout header."""
    cube_a, cube_b, grid = plan_cubes(a, b, target, cadence_s, tile_px)
    if max_lag_s >= (grid.size - 1) * cadence_s:
        log.warning("max lag %g s is not shorter than the %g s series: lags near the ends are poorly constrained",
                    max_lag_s, (grid.size - 1) * cadence_s)

    both = da.map_blocks(lag_tile, cube_a, cube_b, cadence_s=cadence_s, max_lag_s=max_lag_s,
                         chunks=((2,), *cube_a.chunks[1:]), dtype=np.float32,
                         meta=np.empty((0, 0, 0), dtype=np.float32))
    return LagPlan(both[0], both[1], target, grid, cadence_s, max_lag_s, (len(a), len(b)))


def prepare(request: TimeLagRequest, index: IndexBackend,
            tables: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> tuple[Channel, Channel, fits.Header]:
    """Both channels (searched unless ``tables`` are given; headers read eagerly) and the cutout header."""
    table_a, table_b = tables if tables is not None else find_series(index, request)
    a = find_channel(index, request, request.channel_a, table_a)
    b = find_channel(index, request, request.channel_b, table_b)
    reference = reference_header(a)
    target = cutout_header(reference, request.center_arcsec, request.fov_arcsec, request.scale_arcsec)
    check_cutout_in_field(reference, target)  # an all-NaN map would take the whole computation to find out
    if (shared := (min(a.times_s.max(), b.times_s.max()) - max(a.times_s.min(), b.times_s.min()))) <= 0:
        raise SeriesTooShort(f"channels {request.channel_a:g} and {request.channel_b:g} A do not overlap in time")
    log.info("cutout %dx%d px, %.0f s shared by both channels", target["NAXIS1"], target["NAXIS2"], shared)
    return a, b, target


def plan_request(request: TimeLagRequest, index: IndexBackend,
                 tables: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> LagPlan:
    """Search both channels (unless ``tables`` are given), choose the reference cutout, build the lazy graph."""
    a, b, target = prepare(request, index, tables)
    return plan_timelag(a, b, target, request.cadence_s, request.max_lag_s, request.tile_px)


def maps_from(plan: LagPlan, lag_s: np.ndarray, peak: np.ndarray, request: TimeLagRequest) -> LagMaps:
    """Computed arrays plus the provenance recorded in the FITS header."""
    origin = pd.Timestamp(request.reference_time or request.start)
    meta: dict[str, object] = {
        "CHAN_A": (request.channel_a, "channel A [Angstrom]"),
        "CHAN_B": (request.channel_b, "channel B [Angstrom]; lag > 0: B after A"),
        "CADENCE": (plan.cadence_s, "time grid step [s]"),
        "MAXLAG": (plan.max_lag_s, "largest |lag| searched [s]"),
        "NGRID": (int(plan.grid_s.size), "time grid samples"),
        "NFRAME_A": (plan.n_frames[0], "frames of channel A"),
        "NFRAME_B": (plan.n_frames[1], "frames of channel B"),
        "TGRID0": ((origin + pd.Timedelta(seconds=float(plan.grid_s[0]))).isoformat(), "first grid time (UTC)"),
        "TGRID1": ((origin + pd.Timedelta(seconds=float(plan.grid_s[-1]))).isoformat(), "last grid time (UTC)"),
        "ROTMODEL": (ROTATION_MODEL, "differential rotation model"),
    }
    return LagMaps(lag_s, peak, plan.target, meta)


def run_timelag(request: TimeLagRequest, index: IndexBackend, client: Client | None = None,
                on_submit: Callable[[list[Future]], None] | None = None,
                tables: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> dict[str, object]:
    """Plan, compute on ``client`` (else the current dask scheduler), and write FITS and PNG.

    ``on_submit`` receives the futures once submitted (the CLI shows a progress bar);
    ``tables`` are the channels' frames when :func:`find_series` already ran.
    Returns a small JSON-able summary: outputs, shape, frame counts, lag statistics (s).
    """
    started = time.perf_counter()
    plan = plan_request(request, index, tables)
    planned = time.perf_counter()
    if client is None:
        lag_s, peak = dask.compute(plan.lag_s, plan.peak)
    else:
        futures = client.compute([plan.lag_s, plan.peak])
        if on_submit is not None:
            on_submit(futures)
        lag_s, peak = client.gather(futures)
    computed = time.perf_counter()
    finite = np.isfinite(lag_s)
    if not finite.any():
        raise EmptyLagMap(
            f"no pixel of the {lag_s.shape[1]}x{lag_s.shape[0]} cutout has a defined lag: every pixel's series "
            "has a gap (NaN) or is constant in one channel; check the frames and the --center/--fov")
    maps = maps_from(plan, lag_s, peak, request)
    title = f"time lag {request.channel_a:g}-{request.channel_b:g} A"
    write_outputs(maps, request.output, request.png_output, request.max_lag_s, title)
    return {
        "output": request.output,
        "png": request.png_output,
        "shape": list(lag_s.shape),
        "frames": list(plan.n_frames),
        "grid_steps": int(plan.grid_s.size),
        "finite_fraction": float(finite.mean()),
        "median_lag_s": float(np.median(lag_s[finite])) if finite.any() else None,
        "plan_s": round(planned - started, 3),
        "compute_s": round(computed - planned, 3),
        "total_s": round(time.perf_counter() - started, 3),
    }
