"""Fixtures for the AWS tests: the emulated system of template.yaml, and FITS files for it."""

from __future__ import annotations

from pathlib import Path

import pytest
from aws_support import PARAMETERS, ROOT, sky_file


@pytest.fixture
def sky(tmp_path: Path) -> Path:
    return sky_file(tmp_path / "sky.fits")


@pytest.fixture
def emulation():
    """The system of template.yaml on moto (fresh for each test)."""
    from skysift.aws.emulation.emulate import Emulation

    with Emulation(ROOT, parameters=PARAMETERS) as aws:
        yield aws
