"""`skysift plot` of an 8192 x 8192 image stays within the configured memory budget.

It once took 5 GB: the whole image was read, and matplotlib made float64 and RGBA copies
of it. Now the detections are measured on the tiled path and the image is drawn from
block averages read in bands (or tiles, for ``--diagnostics``).

The command runs in a process that caps its own address space (``RLIMIT_AS``) at
1.5 GiB and reports its peak resident size. Measured on Linux with one BLAS thread:
Python with skysift's imports maps about 0.6 GiB of address space (0.1 GiB resident);
the plot peaks near 0.6 GiB resident (0.8 GiB with ``--diagnostics``) under a 1 GiB
budget. BLAS and OpenMP threads are pinned to one, as each thread maps its own stack
and malloc arena, and the mapped size would otherwise grow with the machine's cores.

This sky is sparse (144 stars). On a crowded one (121,834 stars) neighbour correction's
cut-outs once held 111 million pixels per tile, 2.5 GiB, whatever the budget; they are now
measured a bounded batch at a time (``photometry.MOSAIC_MAX_PIXELS``, tested in
``test_photometry``), and that sky's plot peaks near 0.8 GiB.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from astropy.io import fits

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS, ru_maxrss in KiB: Linux"),
]

SIDE = 8192
BUDGET = 2**30
ADDRESS_SPACE_CAP = 3 * 2**29  # 1.5 GiB

#: Caps its own address space, runs ``skysift ARGS``, prints its peak resident size on stderr.
RUN_CAPPED = f"""
import atexit, resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({ADDRESS_SPACE_CAP}, {ADDRESS_SPACE_CAP}))
from skysift.cli.main import main

@atexit.register  # main() ends the process itself (after the exit handlers): no code runs after it
def report_peak():
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forking process (a pytest
    # worker that already grew for other tests), while VmHWM belongs to this program's own memory
    hwm = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print(f"maxrss_kib={{hwm}}", file=sys.stderr)

main()
"""


def write_large_image(path, side: int = SIDE) -> None:
    """A float32 sky of ``side`` x ``side`` pixels (noise and a grid of stars) with a TAN WCS,
    written through a memmap in bands so that this test itself stays small."""
    header = fits.Header()
    header["SIMPLE"], header["BITPIX"], header["NAXIS"] = True, -32, 2
    header["NAXIS1"] = header["NAXIS2"] = side
    header.update({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRPIX1": side / 2, "CRPIX2": side / 2,
                   "CRVAL1": 150.0, "CRVAL2": 2.2, "CD1_1": -1e-4, "CD1_2": 0.0, "CD2_1": 0.0, "CD2_2": 1e-4,
                   "DATE-OBS": "2026-01-01T00:00:00", "FILTER": "r"})
    head = header.tostring().encode()
    data_bytes = side * side * 4
    with open(path, "wb") as handle:
        handle.write(head)
        handle.truncate(len(head) + data_bytes + (-data_bytes) % 2880)
    pixels = np.memmap(path, dtype=">f4", mode="r+", offset=len(head), shape=(side, side))
    rng = np.random.default_rng(8192)
    yy, xx = np.mgrid[-3:4, -3:4]
    star = (5000 * np.exp(-(xx**2 + yy**2) / 4.0)).astype(np.float32)
    rows = 512
    for y0 in range(0, side, rows):
        band = rng.normal(1000.0, 10.0, (rows, side)).astype(np.float32)
        for x in range(100, side - 100, 900):
            band[rows // 2 - 3 : rows // 2 + 4, x - 3 : x + 4] += star
        pixels[y0 : y0 + rows] = band
    pixels.flush()
    del pixels


@pytest.fixture(scope="module")
def large_image(tmp_path_factory):
    path = tmp_path_factory.mktemp("large") / "large.fits"
    write_large_image(path)
    assert path.stat().st_size > SIDE * SIDE * 4
    return path


@pytest.mark.parametrize("mode", [[], ["--diagnostics"]], ids=["overlay", "diagnostics"])
def test_plot_of_an_8192_square_image_stays_within_the_memory_budget(large_image, mode, tmp_path):
    config = tmp_path / "limits.toml"
    config.write_text(f"[limits]\nmax_memory_bytes = {BUDGET}\n")
    out = tmp_path / "large.png"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "MALLOC_ARENA_MAX": "2"}
    done = subprocess.run([sys.executable, "-c", RUN_CAPPED, "--home", str(tmp_path / "home"), "--config", str(config),
                           "plot", *mode, str(large_image), "-o", str(out)],
                          capture_output=True, text=True, env=env, timeout=1200, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote {out} (") and "detections)" in done.stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    peak_bytes = int(done.stderr.rsplit("maxrss_kib=", 1)[1].split()[0]) * 1024
    assert peak_bytes < BUDGET, f"peak resident {peak_bytes / 2**20:.0f} MiB"
