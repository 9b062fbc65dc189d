"""Images at the edges of what SEP handles, shared by the tests that use them (a module of its
own, not a conftest, so every test folder's import finds this one)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

from skysift.analysis.synthetic import SkySpec, make_wcs

#: Where :func:`write_line_sky` puts its source, and its flux above the sky (counts).
LINE_X, LINE_Y, LINE_FLUX = 60.0, 59.5, 20 * 1900.0


def write_line_sky(path: Path, *, size: int = 128, seed: int = 3) -> Path:
    """A small celestial image whose one bright source is one pixel wide and vertical.

    A 20-pixel segment of column 60 (rows 50-69) between two masked (NaN) columns, as a
    hot column or a cosmic-ray streak beside bad columns gives: SEP measures it with
    ``theta = float32(pi/2)``, just above pi/2 in float64 (SEP issue #110), which its own
    ``sum_ellipse`` rejects for the whole frame.
    """
    rng = np.random.default_rng(seed)
    data = rng.normal(100.0, 5.0, (size, size)).astype(np.float32)
    data[50:70, 60] = 2000.0
    data[40:80, 59] = data[40:80, 61] = np.nan
    header = make_wcs(SkySpec(nx=size, ny=size, sip=False)).to_header()
    header["DATE-OBS"], header["FILTER"] = "2026-01-01T00:00:00", "r"
    fits.PrimaryHDU(data, header).writeto(path, overwrite=True)
    return path
