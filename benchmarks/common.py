"""Shared benchmark helpers: synthetic test images, Source Extractor runs, timing."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from astropy.io import fits

from skysift.analysis.synthetic import SkySpec, random_sources, render, write_fits

WORK = Path(__file__).resolve().parent / "_work"
SEX = shutil.which("source-extractor") or shutil.which("sex")


def median_time(fn: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    """Median wall time of ``repeats`` calls (the machine is shared and noisy)."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


def synthetic_image(name: str, size: int, n_stars: int, n_galaxies: int, seed: int = 1):
    """Render (once, cached on disk) a synthetic image; returns its path and truth."""
    WORK.mkdir(exist_ok=True)
    path = WORK / f"{name}.fits"
    truth_path = WORK / f"{name}.truth.npz"
    if path.exists() and truth_path.exists():
        return path, dict(np.load(truth_path, allow_pickle=False))
    rng = np.random.default_rng(seed)
    spec = SkySpec(nx=size, ny=size, fwhm_px=3.0)
    stars, galaxies = random_sources(spec, n_stars, n_galaxies, rng)
    sky = render(spec, stars, galaxies, rng, {"DATE-OBS": "2026-01-01T00:00:00", "FILTER": "r", "SURVEY": "bench"})
    write_fits(path, sky)
    np.savez(truth_path, **{k: np.asarray(v) for k, v in sky.truth.items()})
    return path, sky.truth


SEX_PARAMS = ["NUMBER", "X_IMAGE", "Y_IMAGE", "XWIN_IMAGE", "YWIN_IMAGE", "FLUX_AUTO", "FLUXERR_AUTO",
              "FLUX_RADIUS", "CLASS_STAR", "FLAGS", "ALPHA_J2000", "DELTA_J2000"]


def _gauss_filter(path: Path, fwhm: float = 3.0) -> None:
    sigma = fwhm / 2.3548
    half = int(np.ceil(2 * sigma))
    axis = np.arange(-half, half + 1)
    kernel = np.exp(-(axis[:, None] ** 2 + axis[None, :] ** 2) / (2 * sigma**2))
    lines = ["CONV NORM", f"# Gaussian FWHM {fwhm} px"] + [" ".join(f"{v:.6f}" for v in row) for row in kernel]
    path.write_text("\n".join(lines) + "\n")


def run_source_extractor(image: Path, threads: int = 1, threshold: float = 1.5) -> np.ndarray:
    """Run Source Extractor with a matched Gaussian filter; returns its catalog as a record array."""
    if SEX is None:
        raise RuntimeError("Source Extractor is not installed: apt-get install -y source-extractor")
    folder = WORK / "sex"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "default.param").write_text("\n".join(SEX_PARAMS) + "\n")
    _gauss_filter(folder / "gauss.conv")
    (folder / "default.nnw").write_text(_nnw())
    catalog = folder / f"{image.stem}.cat"
    cmd = [SEX, str(image), "-c", "/dev/null", "-PARAMETERS_NAME", str(folder / "default.param"),
           "-FILTER_NAME", str(folder / "gauss.conv"), "-STARNNW_NAME", str(folder / "default.nnw"),
           "-CATALOG_NAME", str(catalog), "-CATALOG_TYPE", "FITS_1.0", "-DETECT_THRESH", str(threshold),
           "-ANALYSIS_THRESH", str(threshold), "-DETECT_MINAREA", "5", "-BACK_SIZE", "64", "-BACK_FILTERSIZE", "3",
           "-GAIN_KEY", "GAIN", "-SATUR_KEY", "SATURATE", "-PHOT_AUTOPARAMS", "2.5,3.5",
           "-NTHREADS", str(threads), "-VERBOSE_TYPE", "QUIET", "-CHECKIMAGE_TYPE", "NONE",
           "-SEEING_FWHM", "1.2", "-PIXEL_SCALE", "0"]
    subprocess.run(cmd, check=True, cwd=folder)
    return fits.getdata(catalog, 1)


def _nnw() -> str:
    """The star/galaxy network weights file shipped with Source Extractor."""
    for candidate in ("/usr/share/source-extractor/default.nnw", "/usr/share/sextractor/default.nnw"):
        if Path(candidate).exists():
            return Path(candidate).read_text()
    raise RuntimeError("default.nnw not found in the Source Extractor package")
