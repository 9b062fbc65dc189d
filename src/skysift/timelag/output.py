"""Writing the time-lag result: a FITS map with the cutout's WCS, and a PNG plot.

The FITS file has the lag in the primary HDU (seconds, ``BUNIT = 's'``) and the
peak cross-correlation in a ``PEAKCORR`` image extension, both with the reference
cutout's helioprojective WCS and observer, so ``lag, peak = sunpy.map.Map("lag.fits")``
gives two maps that can be overplotted on any AIA image. Outputs go to a local path or to
any fsspec URL (``s3://...``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import fsspec
import numpy as np
import sunpy.map
from astropy.io import fits
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from .. import __version__
from ..storage import is_remote

#: Diverging colour map: blue for B leading A, red for B following A, white for no lag.
CMAP = "RdBu_r"


@dataclass(frozen=True)
class LagMaps:
    """Computed result: lag (s) and peak correlation on the cutout grid described by ``header``."""

    lag_s: np.ndarray
    peak: np.ndarray
    header: fits.Header
    meta: dict[str, object]


def put_bytes(uri: str, payload: bytes) -> None:
    """Write ``payload`` to a local path (creating directories) or an fsspec URL."""
    if not is_remote(uri):
        Path(uri).expanduser().parent.mkdir(parents=True, exist_ok=True)
    with fsspec.open(uri, "wb") as handle:
        handle.write(payload)


def fits_bytes(maps: LagMaps) -> bytes:
    """The FITS file as bytes: primary HDU lag (s), extension PEAKCORR."""
    header = maps.header.copy()
    header["BUNIT"] = "s"
    header["BTYPE"] = "time lag"
    header["ORIGIN"] = f"skysift {__version__}"
    for key, value in maps.meta.items():
        header[key[:8].upper()] = value
    peak_header = maps.header.copy()
    peak_header["BUNIT"] = ""
    peak_header["BTYPE"] = "peak cross-correlation"
    hdul = fits.HDUList([
        fits.PrimaryHDU(maps.lag_s.astype(np.float32), header),
        fits.ImageHDU(maps.peak.astype(np.float32), peak_header, name="PEAKCORR"),
    ])
    buffer = io.BytesIO()
    hdul.writeto(buffer, output_verify="silentfix")
    return buffer.getvalue()


def png_bytes(maps: LagMaps, max_lag_s: float, title: str) -> bytes:
    """A PNG of the lag map on its WCS axes, diverging colours centred on 0, colour bar in seconds."""
    smap = sunpy.map.Map(maps.lag_s.astype(np.float32), maps.header)
    fig = Figure(figsize=(6.4, 5.6), dpi=100)  # no pyplot: no global state, any backend
    ax = fig.add_subplot(projection=smap)
    image = smap.plot(axes=ax, cmap=CMAP, norm=TwoSlopeNorm(0.0, -max_lag_s, max_lag_s), title=title)
    colorbar = fig.colorbar(image, ax=ax)
    colorbar.set_label("time lag [s]")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def write_outputs(maps: LagMaps, fits_uri: str, png_uri: str, max_lag_s: float, title: str) -> None:
    """Write the FITS map and the PNG (local paths or fsspec URLs)."""
    put_bytes(fits_uri, fits_bytes(maps))
    put_bytes(png_uri, png_bytes(maps, max_lag_s, title))
