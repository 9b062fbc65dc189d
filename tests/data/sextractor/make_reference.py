"""Regenerate the Source Extractor reference catalogs in this folder (needs the binary).

Run from the repository root::

    apt-get install -y source-extractor        # Source Extractor 2.25 (Debian)
    .venv/bin/python tests/data/sextractor/make_reference.py

For each reference image (three real images shipped inside installed packages, one
synthetic sky written here with a fixed seed) and for its negation (every detection
on it is false), Source Extractor runs twice with ``skysift.sex``, ``skysift.param``
and ``gauss_3.0_7x7.conv``:

- ``nominal``: ``DETECT_THRESH = 5 * sqrt(sum(K^2))``, skysift's default 5-sigma
  threshold for white noise, the comparison issue 14 made;
- ``matched``: that times skysift's ``noise_correlation_factor`` of the image, the same
  true significance skysift now detects at.

The command lines, thresholds, factors and the input files' SHA-256 go into
``reference.json``, which ``tests/test_vs_sextractor.py`` reads; the test itself never
needs the binary.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from astropy.io import fits

HERE = Path(__file__).resolve().parent
SYNTHETIC = HERE / "synthetic_512.fits"
SYNTHETIC_SEED = 20261414

#: name -> (package, path inside it, HDU)
PACKAGE_IMAGES = {
    "m13": ("astropy", "io/fits/hdu/compressed/tests/data/m13.fits", 0),
    "ukidss": ("astroquery", "ukidss/tests/data/image.fits", 1),
    "magpis": ("astroquery", "magpis/tests/data/image.fits", 0),
}


def package_path(package: str, inner: str) -> Path:
    return Path(str(importlib.resources.files(package).joinpath(*inner.split("/"))))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_synthetic(path: Path) -> None:
    """A 512^2 synthetic sky (Moffat stars, Sersic galaxies, Poisson + read noise), fixed seed."""
    from skysift.analysis.synthetic import SkySpec, random_sources, render, write_fits

    rng = np.random.default_rng(SYNTHETIC_SEED)
    spec = SkySpec(nx=512, ny=512, fwhm_px=3.0)
    stars, galaxies = random_sources(spec, 150, 30, rng)
    sky = render(spec, stars, galaxies, rng, {"DATE-OBS": "2026-01-01T00:00:00", "FILTER": "r", "SURVEY": "test"})
    write_fits(path, sky)


def negate(source: Path, hdu: int, target: Path) -> None:
    """The image HDU times -1, as float32, in a single-HDU file with the same header otherwise."""
    with fits.open(source) as hdul:
        header = hdul[hdu].header.copy()
        data = -np.asarray(hdul[hdu].data, dtype=np.float32)
    for key in ("BZERO", "BSCALE", "BLANK", "XTENSION", "PCOUNT", "GCOUNT", "EXTNAME"):
        header.remove(key, ignore_missing=True)
    fits.PrimaryHDU(data, header).writeto(target, overwrite=True)


def noise_factor(path: Path, hdu: int) -> float:
    from skysift.pipeline.image import process_image
    from skysift.settings import Settings

    result = process_image(str(path), Settings.load(home=tempfile.mkdtemp()), hdu=hdu)
    assert result.ok, result.record
    return float(result.record.noise_correlation_factor)


def white_noise_threshold() -> float:
    from skysift.core.detection import gaussian_kernel

    return 5.0 * float(np.sqrt((gaussian_kernel(3.0).astype(np.float64) ** 2).sum()))


def run(binary: str, image: str, catalog: str, threshold: float, workdir: Path) -> list[str]:
    command = [binary, image, "-c", "skysift.sex", "-CATALOG_NAME", catalog,
               "-DETECT_THRESH", f"{threshold:.4f}", "-ANALYSIS_THRESH", f"{threshold:.4f}"]
    subprocess.run(command, check=True, cwd=workdir)
    return ["source-extractor", *command[1:]]


def main() -> int:
    binary = shutil.which("source-extractor") or shutil.which("sex")
    if binary is None:
        print("Source Extractor is not installed: apt-get install -y source-extractor", file=sys.stderr)
        return 1
    version = subprocess.run([binary, "-v"], capture_output=True, text=True).stdout.strip()
    if not SYNTHETIC.exists():
        write_synthetic(SYNTHETIC)
    images = {name: (package_path(pkg, inner), hdu, pkg, inner) for name, (pkg, inner, hdu) in PACKAGE_IMAGES.items()}
    images["synthetic"] = (SYNTHETIC, 0, None, SYNTHETIC.name)
    base = white_noise_threshold()
    manifest: dict = {"source_extractor": version, "white_noise_threshold": round(base, 4), "images": {}}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        for config in ("skysift.sex", "skysift.param", "gauss_3.0_7x7.conv"):
            shutil.copy(HERE / config, work / config)
        for name, (path, hdu, package, inner) in images.items():
            factor = noise_factor(path, hdu)
            negated = work / f"{name}_negated.fits"
            negate(path, hdu, negated)
            entry = {"package": package, "path": inner, "hdu": hdu, "sha256": sha256(path),
                     "noise_correlation_factor": factor, "catalogs": {}}
            for kind, threshold in (("nominal", base), ("matched", base * factor)):
                for sign, image in (("", f"{path}[{hdu}]"), ("_negated", str(negated))):
                    catalog = f"{name}{sign}_{kind}.cat"
                    command = run(binary, image, catalog, threshold, work)
                    shutil.copy(work / catalog, HERE / catalog)
                    shown = [c.replace(str(path), f"<{name}>").replace(str(negated), f"<{name}_negated>") for c in command]
                    entry["catalogs"][f"{kind}{sign}"] = {"file": catalog, "detect_thresh": round(threshold, 4),
                                                           "command": " ".join(shown)}
            manifest["images"][name] = entry
    (HERE / "reference.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
