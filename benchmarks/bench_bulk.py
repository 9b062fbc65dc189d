"""Bulk throughput: 200 images of 2048 x 2048 with 1 and 2 worker processes.

Also: the share of per-image time spent outside SEP (reading, WCS, catalog building,
Parquet writes), and the query speed-up from ``skysift compact``.

Run: ``.venv/bin/python benchmarks/bench_bulk.py [--images 200] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

from common import WORK, median_time, synthetic_image
from skysift.catalog.query import LocalCatalog
from skysift.catalog.tables import LocalTables
from skysift.io import storage
from skysift.pipeline.image import process_image, record
from skysift.pipeline.survey import run_local
from skysift.settings import Settings

QUERY = "SELECT COUNT(*) AS n, AVG(flux) AS mean_flux, MAX(snr) AS max_snr FROM sources WHERE flux > 500"


def make_images(n: int, base: int = 10) -> list[str]:
    """``n`` distinct files (own DATE-OBS, so own content hash) made from ``base`` rendered skies."""
    folder = WORK / "bulk"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"img_{i:04d}.fits"
        if not path.exists():
            source, _ = synthetic_image(f"bulk_base_{i % base}", 2048, n_stars=1200, n_galaxies=300, seed=100 + i % base)
            with fits.open(source) as hdul:
                hdul[0].header["DATE-OBS"] = f"2026-02-{1 + i // 24:02d}T{i % 24:02d}:00:00"
                hdul.writeto(path)
        paths.append(str(path))
    return paths


def overhead_share(paths: list[str]) -> dict[str, float]:
    """Median fraction of per-image time outside SEP's background, extraction and photometry."""
    home = tempfile.mkdtemp()
    settings = Settings.load(home=home)
    shares, totals = [], []
    for i, path in enumerate(paths):
        if i + 1 < len(paths):
            storage.prefetch(paths[i + 1])  # as `skysift run` does
        t = time.perf_counter()
        result = process_image(path, settings)
        record(result, LocalTables(home))
        total = time.perf_counter() - t
        sep_time = sum(result.timings.get(k, 0.0) for k in ("background_s", "detect_s", "measure_s"))
        shares.append(1.0 - sep_time / total)
        totals.append(total)
    return {"outside_sep_share_median": float(np.median(shares)), "seconds_per_image_median": float(np.median(totals))}


def main() -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3, help="runs per worker count; medians are reported")
    args = parser.parse_args()
    paths = make_images(args.images)
    out: dict[str, object] = {"images": len(paths), "size": "2048x2048 float32"}
    seconds: dict[int, list[float]] = {1: [], 2: []}
    alert_seconds: dict[int, list[float]] = {1: [], 2: []}
    for repeat in range(args.repeats):
        # alternate the order, so neither worker count always runs first (cold cache, load)
        for workers in (1, 2) if repeat % 2 == 0 else (2, 1):
            home = tempfile.mkdtemp()
            t = time.perf_counter()
            report = run_local(paths, Settings.load(home=home), workers=workers)
            seconds[workers].append(time.perf_counter() - t)
            alert_seconds[workers].append(report.alerts_seconds)
            assert report.count("ok") == len(paths)
            last_home = home
    for workers in (1, 2):
        out[f"seconds_{workers}w_runs"] = seconds[workers]
        out[f"seconds_{workers}w"] = float(np.median(seconds[workers]))
        out[f"images_per_s_{workers}w"] = len(paths) / out[f"seconds_{workers}w"]
        out[f"alert_phase_seconds_{workers}w"] = float(np.median(alert_seconds[workers]))
    out["scaling_efficiency"] = out["images_per_s_2w"] / (2 * out["images_per_s_1w"])
    out["scaling_efficiency_per_repeat"] = [a / (2 * b) for a, b in zip(seconds[1], seconds[2], strict=True)]
    out.update(overhead_share(paths[:20]))
    before, _ = median_time(lambda: LocalCatalog(last_home).sql(QUERY), 5)
    files_before = len(list(Path(last_home, "tables", "sources").rglob("*.parquet")))
    LocalTables(last_home).compact()
    after, _ = median_time(lambda: LocalCatalog(last_home).sql(QUERY), 5)
    files_after = len(list(Path(last_home, "tables", "sources").rglob("*.parquet")))
    out.update(query_s_before_compact=before, query_s_after_compact=after, query_speedup=before / after,
               source_files_before=files_before, source_files_after=files_after)
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
