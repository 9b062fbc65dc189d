"""End-to-end speed on one 4096 x 4096 float32 image with ~5,000 sources.

Three contenders on the same file, in the same run, medians of REPEATS:

* raw SEP: read + background + extract + AUTO (Kron) flux; the baseline;
* skysift: read, background, detect, measure everything, WCS, write Parquet, in one
  process and with both cores (detection in strips; the catalogs are checked equal);
* Source Extractor 2.25 at the equivalent threshold, 1 and 2 threads.

Run: ``.venv/bin/python benchmarks/bench_detect.py [--repeats 5]``
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

import numpy as np
import pyarrow as pa
import sep
from astropy.io import fits

from common import SEX, median_time, run_source_extractor, synthetic_image
from skysift.catalog.tables import LocalTables
from skysift.core.detection import gaussian_kernel
from skysift.pipeline.image import process_image
from skysift.settings import Settings


def raw_sep(path) -> int:
    data = fits.getdata(path).astype(np.float32)
    bkg = sep.Background(data, bw=64, bh=64, fw=3, fh=3)
    bkg.subfrom(data)
    objects = sep.extract(data, 1.5, err=bkg.globalrms)
    kron, _ = sep.kron_radius(data, objects["x"], objects["y"], objects["a"], objects["b"], objects["theta"], 6.0)
    sep.sum_ellipse(data, objects["x"], objects["y"], objects["a"], objects["b"], objects["theta"],
                    np.maximum(2.5 * kron, 3.5), subpix=1)
    return len(objects)


def skysift_end_to_end(path, home, workers: int = 1):
    settings = Settings.load(home=home)
    result = process_image(str(path), settings, workers=workers)
    LocalTables(home).write_image(result.record, result.sources)
    return result.sources


def main() -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    path, truth = synthetic_image("bench_4k", 4096, n_stars=4000, n_galaxies=1000)
    home = tempfile.mkdtemp()
    kernel = gaussian_kernel(3.0)
    se_threshold = 5.0 * float(np.sqrt((kernel**2).sum()))  # our matched 5 sigma in SE's units
    results = {"image": "4096x4096 float32", "injected": len(truth["x"]), "repeats": args.repeats}
    t, _ = median_time(lambda: raw_sep(path), args.repeats)
    results["raw_sep_s"] = t
    results["raw_sep_n"] = raw_sep(path)
    for workers in (1, 2):
        t, _ = median_time(lambda workers=workers: skysift_end_to_end(path, home, workers), args.repeats)
        results[f"skysift_{workers}p_s"] = t
    one, two = skysift_end_to_end(path, home, 1), skysift_end_to_end(path, home, 2)
    results["skysift_n"] = one.num_rows
    numeric = [f.name for f in one.schema if f.type in (pa.float32(), pa.float64())]
    results["skysift_2p_max_abs_difference"] = max(
        float(np.nanmax(np.abs(one[c].to_numpy(zero_copy_only=False) - two[c].to_numpy(zero_copy_only=False)))) for c in numeric)
    if SEX:
        for threads in (1, 2):
            t, _ = median_time(lambda threads=threads: run_source_extractor(path, threads, se_threshold), args.repeats)
            results[f"source_extractor_{threads}t_s"] = t
        results["source_extractor_n"] = len(run_source_extractor(path, 1, se_threshold))
    for workers in (1, 2):
        results[f"skysift_{workers}p_over_raw_sep"] = results[f"skysift_{workers}p_s"] / results["raw_sep_s"]
    results["cpus"] = os.cpu_count()
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
