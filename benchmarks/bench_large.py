"""A 16384 x 16384 float32 image (1 GiB) with ~50,000 sources through the tiled path.

Measures, in a child process so the numbers are its own: wall time (the 4k image: median of 5
runs, after the first pays for lazy imports), peak RSS of the
parent and of the tile workers, throughput in Mpix/s, and compares throughput with the
in-memory path on the 4096 x 4096 benchmark image measured in the same run.

Run: ``.venv/bin/python benchmarks/bench_large.py [--size 16384] [--max-memory 1GiB]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from common import synthetic_image

CHILD = """
import json, sys, threading, time, tempfile
import psutil
from skysift.pipeline.image import process_image
from skysift.settings import Settings
path, budget, workers, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
me, peak, done = psutil.Process(), [0, 0], threading.Event()
def sample():  # peak resident memory of this process and, summed, of its tile workers
    while not done.is_set():
        try:
            kids = sum(k.memory_info().rss for k in me.children(recursive=True))
            peak[0], peak[1] = max(peak[0], me.memory_info().rss), max(peak[1], kids)
            peak.append(me.memory_info().rss + kids)
        except psutil.Error:
            pass
        time.sleep(0.02)
threading.Thread(target=sample, daemon=True).start()
settings = Settings.load(home=tempfile.mkdtemp(), limits={"max_memory_bytes": budget})
times = []
for _ in range(repeats):  # the first call in a fresh process also pays for lazy imports
    t = time.perf_counter()
    result = process_image(path, settings, workers=workers)
    times.append(time.perf_counter() - t)
seconds = sorted(times)[len(times) // 2]
done.set()
print(json.dumps({"seconds": seconds, "route": result.record.route, "n_sources": result.record.n_sources,
                  "status": result.record.status, "peak_rss_main_mib": peak[0] / 2**20,
                  "peak_rss_workers_mib": peak[1] / 2**20, "peak_rss_total_mib": max(peak[2:] or [0]) / 2**20}))
"""


def run_child(path, budget: int, workers: int, repeats: int = 1) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(budget), str(workers), str(repeats)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=16384)
    parser.add_argument("--max-memory", type=int, default=2**30)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    n = args.size
    t = time.perf_counter()
    big, _ = synthetic_image(f"large_{n}", n, n_stars=int(40_000 * (n / 16384) ** 2), n_galaxies=int(10_000 * (n / 16384) ** 2), seed=5)
    made = time.perf_counter() - t
    small, _ = synthetic_image("bench_4k", 4096, n_stars=4000, n_galaxies=1000)
    in_memory = run_child(small, 8 * 2**30, 1, repeats=5)
    tiled = run_child(big, args.max_memory, args.workers)
    tiled_1w = run_child(big, args.max_memory, 1)
    out = {
        "image": f"{n}x{n} float32 ({n * n * 4 / 2**30:.2f} GiB)", "render_s": made, "budget_mib": args.max_memory / 2**20,
        "tiled": tiled, "tiled_1_worker": tiled_1w, "in_memory_4k": in_memory,
        "tiled_mpix_per_s": n * n / 1e6 / tiled["seconds"],
        "tiled_1_worker_mpix_per_s": n * n / 1e6 / tiled_1w["seconds"],
        "in_memory_mpix_per_s": 4096 * 4096 / 1e6 / in_memory["seconds"],
    }
    out["throughput_ratio_in_memory_over_tiled"] = out["in_memory_mpix_per_s"] / out["tiled_mpix_per_s"]
    out["throughput_ratio_in_memory_over_tiled_1_worker"] = out["in_memory_mpix_per_s"] / out["tiled_1_worker_mpix_per_s"]
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
