"""Shared fixtures: real FITS files from installed packages, synthetic skies with truth
(all written by :func:`sky_factory.write_sky`)."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import pytest

from sky_factory import write_sky
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
    """A 1024^2 synthetic sky (stars and galaxies uniform in magnitude): (path, sky, spec)."""
    return write_sky(tmp_path_factory.mktemp("truth") / "sky.fits", size=1024, n_stars=600, n_galaxies=150,
                     seed=20261121, header={"SURVEY": "test"})


@pytest.fixture
def make_sky(tmp_path):
    """Factory: write a small synthetic sky (512^2 unless ``size``) under ``tmp_path``; returns (path, sky).

    Its keyword arguments are :func:`sky_factory.write_sky`'s.
    """

    def make(name="sky.fits", **kwargs):
        path, sky, _spec = write_sky(tmp_path / name, **kwargs)
        return path, sky

    return make


@pytest.fixture(autouse=True)
def _plain_output(monkeypatch):
    """Commands print what they print in CI, whatever the developer's shell forces (colour, width)."""
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS", "LINES"):
        monkeypatch.delenv(name, raising=False)
