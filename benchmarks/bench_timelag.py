"""Time-lag benchmark: 180 frames x 2 channels of 512x512, whole pipeline and the lag step.

Run from the repository root::

    .venv/bin/python benchmarks/bench_timelag.py --workers 2 --pipeline-repeats 1 --lag-repeats 3

What it does:

1. writes 2 x 180 synthetic AIA-like FITS frames (512x512 float32, 1.2 arcsec/px, the
   real header of sunpy's ``aia_171_level1.fits`` re-timed and re-pointed to track
   the region, observer at Earth), 4 min cadence = 12 h, channel 171 sampled 40 s after
   193, exposures 1.5-2.9 s, 171 = 193 delayed by 0-30 min across the field;
2. indexes them into an images table with skysift's own ``ingest_image``;
3. times ``run_timelag`` (search -> headers -> read/normalise/reproject with
   differential rotation -> interpolate onto the grid -> lag -> FITS + PNG) on a
   ``LocalCluster`` of ``--workers`` single-threaded processes, and samples the peak
   summed RSS of the client and worker processes;
4. computes the two interpolated cubes once more (kept in memory), then times the lag
   step on that same numpy cube: ``skysift.timelag.lag.cross_correlation_lag`` vs
   ``sunkit_image.time_lag.time_lag`` (numpy in, one call), with tracemalloc peaks, and
   reports how many pixels get the same lag.

The synthetic emission is defined in the frames' pixel grid (not on the rotating
surface), so it measures speed and memory, not accuracy; accuracy is what
``tests/timelag`` asserts. Prints a JSON report and writes it to ``--report``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.resources
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import astropy.units as u
import numpy as np
import psutil
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning
from sunpy.coordinates import (
    HeliographicCarrington,
    Helioprojective,
    get_earth,
    propagate_with_solar_surface,
)

from skysift.alerts.log import LogPublisher
from skysift.catalog.tables import LocalTables
from skysift.pipeline.image import ingest_image
from skysift.settings import Settings
from skysift.timelag.cluster import dask_client
from skysift.timelag.index import LocalIndex
from skysift.timelag.lag import cross_correlation_lag
from skysift.timelag.pipeline import plan_cubes, prepare, run_timelag
from skysift.timelag.request import TimeLagRequest

T0 = datetime(2011, 2, 15, tzinfo=UTC)
CENTER = (-125.0, 250.0)


def _header(when: datetime, wavelength: int, n: int, scale: float, pointing: tuple[float, float], exptime: float) -> fits.Header:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        header = fits.getheader(importlib.resources.files("sunpy.data.test") / "aia_171_level1.fits")
    for key in ("HAEX_OBS", "HAEY_OBS", "HAEZ_OBS", "GAEX_OBS", "GAEY_OBS", "GAEZ_OBS", "OBS_VR", "OBS_VW",
                "OBS_VN", "CAR_ROT", "T_OBS", "BLANK"):
        header.remove(key, ignore_missing=True)
    stamp = when.replace(tzinfo=None).isoformat(timespec="milliseconds")
    earth = get_earth(stamp)
    header.update(NAXIS1=n, NAXIS2=n, CDELT1=scale, CDELT2=scale, CRPIX1=(n + 1) / 2, CRPIX2=(n + 1) / 2,
                  CRVAL1=pointing[0], CRVAL2=pointing[1], CROTA2=0.0, WAVELNTH=wavelength, EXPTIME=exptime,
                  HGLN_OBS=0.0, HGLT_OBS=float(earth.lat.deg), DSUN_OBS=float(earth.radius.to_value(u.m)),
                  CRLT_OBS=float(earth.lat.deg),
                  CRLN_OBS=float(earth.transform_to(HeliographicCarrington(observer="earth", obstime=stamp)).lon.deg))
    header["DATE-OBS"] = stamp
    return header


def _tracked_pointing(when: datetime) -> tuple[float, float]:
    """Where the region seen at CENTER at T0 appears at ``when`` (the frames track it)."""
    start = T0.replace(tzinfo=None).isoformat()
    stamp = when.replace(tzinfo=None).isoformat()
    point = SkyCoord(CENTER[0] * u.arcsec, CENTER[1] * u.arcsec,
                     frame=Helioprojective(observer=get_earth(start), obstime=start))
    with propagate_with_solar_surface():
        moved = point.transform_to(Helioprojective(observer=get_earth(stamp), obstime=stamp))
    return float(moved.Tx.to_value(u.arcsec)), float(moved.Ty.to_value(u.arcsec))


def make_series(root: Path, n_frames: int, n_px: int, scale: float, cadence_s: float, seed: int = 0) -> Path:
    """Write the frames and their images index; return the home directory."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:n_px, 0:n_px] / n_px
    lag_s = 1800.0 * xx  # 0 .. 30 min across the frame
    pulses = rng.uniform(-3600, n_frames * cadence_s + 3600, 60), rng.uniform(360, 900, 60)
    pattern = 1.0 + 0.5 * np.sin(9 * xx) * np.cos(7 * yy)

    def light(t: np.ndarray) -> np.ndarray:
        out = np.zeros_like(t)
        for centre, width in zip(*pulses, strict=True):
            out += np.exp(-0.5 * ((t - centre) / width) ** 2)
        return out

    frames = root / "frames"
    frames.mkdir(parents=True)
    paths = []
    for k in range(n_frames):
        for wavelength, offset in ((193, 0.0), (171, 40.0)):
            t_s = k * cadence_s + offset + rng.uniform(-5, 5)
            when = T0 + timedelta(seconds=t_s)
            exptime = float(rng.uniform(1.5, 2.9))
            shift = lag_s if wavelength == 171 else 0.0
            rate = 100.0 + 400.0 * pattern * light(t_s - shift + 0 * xx)
            header = _header(when, wavelength, n_px, scale, _tracked_pointing(when), exptime)
            path = frames / f"aia_{wavelength}_{k:03d}.fits"
            fits.PrimaryHDU((rate * exptime).astype(np.float32), header).writeto(path)
            paths.append(path)
    home = root / "home"
    settings, store, publisher = Settings(home=home), LocalTables(home), LogPublisher(home)
    for path in paths:
        ingest_image(str(path), settings, store=store, publisher=publisher)
    return home


class PeakRSS:
    """Samples the summed RSS of this process and its children every ``interval_s``."""

    def __init__(self, interval_s: float = 0.2) -> None:
        self.interval_s = interval_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):  # a worker may exit between listing and reading
                    total += proc.memory_info().rss
            self.peak_bytes = max(self.peak_bytes, total)
            time.sleep(self.interval_s)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _timed(func, repeats: int) -> tuple[list[float], int, object]:
    times, peak, result = [], 0, None
    for _ in range(repeats):
        tracemalloc.start()
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
        peak = max(peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    return times, peak, result


def _pipeline(args: argparse.Namespace, root: Path, report: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate and index the series, time ``run_timelag``, then compute the two cubes once more."""
    start = time.perf_counter()
    home = make_series(root, args.frames, args.size, args.scale, args.cadence)
    report["generate_s"] = round(time.perf_counter() - start, 1)
    request = TimeLagRequest(
        channel_a=193, channel_b=171, start=T0 - timedelta(minutes=1),
        end=T0 + timedelta(seconds=args.frames * args.cadence + 60), center_arcsec=CENTER,
        fov_arcsec=(args.fov, args.fov), cadence_s=args.cadence, max_lag_s=args.max_lag, index=str(home),
        output=str(root / "lag.fits"), workers=args.workers,
    )
    index = LocalIndex(home)
    with dask_client(None, args.workers) as client:
        walls, peaks, summaries = [], [], []
        for _ in range(args.pipeline_repeats):
            with PeakRSS() as rss:
                start = time.perf_counter()
                summaries.append(run_timelag(request, index, client))
                walls.append(time.perf_counter() - start)
            peaks.append(rss.peak_bytes)
        report["pipeline_wall_s"] = [round(w, 2) for w in walls]
        report["pipeline_wall_median_s"] = round(statistics.median(walls), 2)
        report["pipeline_peak_rss_mib"] = round(max(peaks) / 2**20, 1)
        report["pipeline_summary"] = summaries[-1]
        a, b, target = prepare(request, index)
        cube_a, cube_b, grid = plan_cubes(a, b, target, args.cadence)
        start = time.perf_counter()
        cube_a, cube_b = (np.asarray(c) for c in client.gather(client.compute([cube_a, cube_b])))
        report["cubes_compute_s"] = round(time.perf_counter() - start, 2)
    return cube_a, cube_b, grid


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=180)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--scale", type=float, default=1.2, help="input pixel size, arcsec")
    parser.add_argument("--fov", type=float, default=500.0, help="cutout size, arcsec")
    parser.add_argument("--cadence", type=float, default=240.0, help="seconds")
    parser.add_argument("--max-lag", type=float, default=6 * 3600.0, help="seconds")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pipeline-repeats", type=int, default=1)
    parser.add_argument("--lag-repeats", type=int, default=3)
    parser.add_argument("--workdir", default=None, help="keep the frames here (default: a temp dir, removed)")
    parser.add_argument("--report", default="benchmarks/_work/timelag-report.json")
    parser.add_argument("--cubes", default=None,
                        help="save the interpolated cubes here (.npz); if the file exists, load them and time only the lag step")
    args = parser.parse_args(argv)

    root = Path(args.workdir or tempfile.mkdtemp(prefix="bench-timelag-"))
    report: dict = {"frames_per_channel": args.frames, "frame_px": args.size, "cutout_arcsec": args.fov,
                    "input_scale_arcsec": args.scale, "cadence_s": args.cadence, "max_lag_s": args.max_lag,
                    "workers": args.workers, "cpu_count": os.cpu_count(),
                    "machine": f"{psutil.cpu_count()} cpu, {psutil.virtual_memory().total / 2**30:.0f} GiB"}
    try:
        if args.cubes and Path(args.cubes).exists():  # re-run only the lag step on saved cubes
            with np.load(args.cubes) as saved:
                cube_a, cube_b, grid = saved["cube_a"], saved["cube_b"], saved["grid"]
            report["cubes_from"] = args.cubes
        else:
            cube_a, cube_b, grid = _pipeline(args, root, report)
            if args.cubes:
                np.savez(args.cubes, cube_a=cube_a, cube_b=cube_b, grid=grid)
        report["cube_shape"] = list(cube_a.shape)

        from sunkit_image.time_lag import time_lag

        times_q = grid * u.s
        bounds = u.Quantity([-args.max_lag, args.max_lag], u.s)
        sk_times, sk_peak, sk_lag = _timed(lambda: time_lag(cube_a, cube_b, times_q, lag_bounds=bounds).to_value(u.s),
                                           args.lag_repeats)
        our_times, our_peak, ours = _timed(lambda: cross_correlation_lag(cube_a, cube_b, args.cadence, args.max_lag)[0],
                                           args.lag_repeats)
        sk_lag64 = time_lag(cube_a.astype(np.float64), cube_b.astype(np.float64), times_q, lag_bounds=bounds).to_value(u.s)
        both = np.isfinite(ours) & np.isfinite(sk_lag)
        # sunkit-image builds its lags by cumulative sums of the grid's time steps, so its
        # values carry float round-off (959.9999999 s): compare lags to 1 ms, not bit for bit.
        same = np.isclose(ours, sk_lag, rtol=0, atol=1e-3)
        same64 = np.isclose(ours, sk_lag64, rtol=0, atol=1e-3)
        report["lag_step"] = {
            "sunkit_image_time_lag_s": [round(t, 3) for t in sk_times],
            "sunkit_image_median_s": round(statistics.median(sk_times), 3),
            "sunkit_image_peak_alloc_mib": round(sk_peak / 2**20, 1),
            "skysift_s": [round(t, 3) for t in our_times],
            "skysift_median_s": round(statistics.median(our_times), 3),
            "skysift_peak_alloc_mib": round(our_peak / 2**20, 1),
            "speedup": round(statistics.median(sk_times) / statistics.median(our_times), 2),
            "same_lag_fraction": float(same[both].mean()),
            "same_lag_fraction_vs_float64_call": float(same64[both].mean()),
            "bitwise_equal_fraction": float((ours[both] == sk_lag[both]).mean()),
            "within_one_step_fraction": float((np.abs(ours[both] - sk_lag[both]) <= args.cadence).mean()),
            "pixels_compared": int(both.sum()),
        }
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    text = json.dumps(report, indent=2)
    print(text)
    Path(args.report).write_text(text + "\n")
    return report


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
