"""Probe of a lever for issue 15's one-image row: the first image's sky estimated while the imports run.

Not a benchmark of skysift itself: it measures how much earlier the sky-subtracted pixels and
the RMS map of one image are ready when a process, after importing only what reading and SEP
need (numpy, astropy.io.fits, sep), forks a child that reads the image and estimates its sky
into shared memory while the parent imports the rest of what ``skysift run`` imports. On two
cores the child's read and sky (0.5 s for a 4096^2 image) then overlap the parent's imports
(about 1 s), which today come first and run on one core while the other idles.

Two whole processes per round, alternating, medians over the rounds:

* ``sequential``: every import first, then the read and the sky (today's order);
* ``overlapped``: the header read, two shared anonymous maps (pixels and RMS), a fork; the
  child reads and estimates into them while the parent imports, then the parent waits for it.

Both read the same file the same way (``astropy.io.fits``, native float32) and estimate the same
SEP background (64 px cells, 3x3 median filter). Run from the repository root::

    PYTHONPATH=src .venv/bin/python benchmarks/probe_fork_sky.py [IMAGE] [--rounds 7]

``IMAGE`` defaults to the 4096^2 image of ``bench_detect.py`` and ``bench_vs_sextractor.py`` (rendered
into ``benchmarks/_work`` when missing).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from common import synthetic_image

#: What ``skysift run FILE`` imports besides numpy, astropy.io.fits and sep, by the time it
#: has written its tables.
REST = ("import skysift.cli.main, skysift.pipeline.survey, skysift.pipeline.image, scipy.optimize, "
        "pandas, duckdb")

SKY = """
def sky(path, out_data=None, out_rms=None):
    from astropy.io import fits
    import numpy as np, sep
    with fits.open(path, memmap=False) as hdul:
        raw = hdul[0].data
        data = raw.astype(np.float32) if out_data is None else out_data
        if out_data is not None:
            data[...] = raw
    bkg = sep.Background(data, bw=64, bh=64, fw=3, fh=3)
    bkg.subfrom(data)
    rms = bkg.rms(dtype=np.float32)
    if out_rms is not None:
        out_rms[...] = rms
    return data, rms
"""


def sequential(image: str) -> str:
    return f"""{SKY}
import numpy, astropy.io.fits, sep
{REST}
data, rms = sky({image!r})
"""


def overlapped(image: str) -> str:
    return f"""{SKY}
import mmap, os
import numpy as np, astropy.io.fits, sep
from astropy.io import fits
header = fits.getheader({image!r})
shape = (header['NAXIS2'], header['NAXIS1'])
size = shape[0] * shape[1] * 4
pixels, noise = mmap.mmap(-1, size), mmap.mmap(-1, size)  # MAP_SHARED | MAP_ANONYMOUS: seen by both
data = np.frombuffer(pixels, np.float32).reshape(shape)
rms = np.frombuffer(noise, np.float32).reshape(shape)
child = os.fork()
if child == 0:
    sky({image!r}, data, rms)
    os._exit(0)
{REST}
_, status = os.waitpid(child, 0)
assert status == 0 and float(rms.max()) > 0
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", nargs="?", help="a 2-D float32 FITS image (default: the 4096^2 bench image)")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    image = args.image or str(synthetic_image("bench_4k", 4096, n_stars=4000, n_galaxies=1000)[0])
    times: dict[str, list[float]] = {"sequential": [], "overlapped": []}
    for i in range(args.rounds):
        for name in ("sequential", "overlapped") if i % 2 else ("overlapped", "sequential"):
            code = sequential(image) if name == "sequential" else overlapped(image)
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            times[name].append(time.perf_counter() - start)
    for name, values in times.items():
        print(f"{name}: median {statistics.median(values):.3f} s  {[round(v, 2) for v in values]}")
    ratio = statistics.median(times["overlapped"]) / statistics.median(times["sequential"])
    print(f"overlapped / sequential: {ratio:.3f}")


if __name__ == "__main__":
    main()
