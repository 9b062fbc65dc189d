"""Shared fixtures: real FITS files from installed packages, synthetic skies with truth."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import numpy as np
import pytest

from skysift.analysis.synthetic import SkySpec, random_sources, render, write_fits
from skysift.settings import Settings


def package_file(package: str, *parts: str) -> Path:
    path = Path(str(importlib.resources.files(package).joinpath(*parts)))
    assert path.exists(), path
    return path


@pytest.fixture(scope="session")
def m13_files() -> dict[str, Path]:
    """astropy's m13 test image: plain, Rice, HCOMPRESS and GZIP tile-compressed twins."""
    base = ("io", "fits", "hdu", "compressed", "tests", "data")
    return {kind: package_file("astropy", *base, f"m13{suffix}.fits")
            for kind, suffix in [("plain", ""), ("rice", "_rice"), ("hcompress", "_hcomp"), ("gzip", "_gzip")]}


@pytest.fixture(scope="session")
def aia_file() -> Path:
    """sunpy's real SDO/AIA 171 A level-1 test image (helioprojective)."""
    return package_file("sunpy", "data", "test", "aia_171_level1.fits")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def settings(home: Path) -> Settings:
    return Settings.load(home=home)


@pytest.fixture(scope="session")
def truth_sky(tmp_path_factory):
    """A 1024^2 synthetic sky (stars and galaxies uniform in magnitude) and its truth."""
    rng = np.random.default_rng(20261121)
    spec = SkySpec(nx=1024, ny=1024, fwhm_px=3.0)
    stars, galaxies = random_sources(spec, 600, 150, rng)
    sky = render(spec, stars, galaxies, rng, {"DATE-OBS": "2026-01-01T00:00:00", "FILTER": "r", "SURVEY": "test"})
    path = tmp_path_factory.mktemp("truth") / "sky.fits"
    write_fits(path, sky)
    return path, sky, spec


@pytest.fixture
def make_sky(tmp_path):
    """Factory: write a small synthetic sky to a FITS file; returns (path, sky)."""

    def make(name="sky.fits", *, n_stars=150, n_galaxies=30, seed=1, size=512, header=None, compress=False, **spec_args):
        rng = np.random.default_rng(seed)
        spec = SkySpec(nx=size, ny=size, **spec_args)
        stars, galaxies = random_sources(spec, n_stars, n_galaxies, rng)
        sky = render(spec, stars, galaxies, rng, {"DATE-OBS": "2026-01-01T00:00:00", "FILTER": "r", **(header or {})})
        path = tmp_path / name
        write_fits(path, sky, compress=compress)
        return path, sky

    return make


@pytest.fixture(autouse=True)
def _plain_output(monkeypatch):
    """Commands print what they print in CI, whatever the developer's shell forces (colour, width)."""
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS", "LINES"):
        monkeypatch.delenv(name, raising=False)
