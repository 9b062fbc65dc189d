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

from skysift import __version__
from skysift.io.storage import is_remote

__all__ = [
    "CMAP",
    "LAG_PERCENTILE",
    "LagMaps",
    "fits_bytes",
    "lag_colour_limit_s",
    "lag_figure",
    "png_bytes",
    "put_bytes",
    "write_outputs",
]

#: Diverging colour map: blue for B leading A, red for B following A, white for no lag.
CMAP = "RdBu_r"
#: Percentile of |lag| that sets the PNG's symmetric colour scale.
LAG_PERCENTILE = 99.0


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


def lag_colour_limit_s(lag_s: np.ndarray, fallback_s: float, percentile: float = LAG_PERCENTILE) -> float:
    """Half-width of the symmetric colour scale, seconds: the ``percentile`` of ``|lag|``.

    Real lags are minutes while the search window is hours: a scale spanning
    ``+-max_lag`` would paint them all near white. A robust percentile keeps a few
    extreme pixels from setting the scale. ``fallback_s`` (e.g. one cadence step) is
    used when no lag is finite or all are 0.
    """
    finite = np.abs(lag_s[np.isfinite(lag_s)])
    limit = float(np.percentile(finite, percentile)) if finite.size else 0.0
    return limit if limit > 0 else float(fallback_s)


def lag_figure(maps: LagMaps, max_lag_s: float, title: str, *, limit_s: float | None = None) -> Figure:
    """The lag map on its WCS axes, diverging colours centred on 0, colour bar in seconds.

    The colour scale is symmetric, ``+-limit_s`` (default :func:`lag_colour_limit_s`: the
    99th percentile of ``|lag|``, never more than ``max_lag_s``). A plain matplotlib
    :class:`~matplotlib.figure.Figure` (no pyplot state): Jupyter shows it inline.
    """
    cadence_s = float(maps.meta.get("CADENCE", (max_lag_s,))[0])
    limit = min(limit_s if limit_s is not None else lag_colour_limit_s(maps.lag_s, cadence_s), max_lag_s)
    smap = sunpy.map.Map(maps.lag_s.astype(np.float32), maps.header)
    fig = Figure(figsize=(6.4, 5.6), dpi=100)
    ax = fig.add_subplot(projection=smap)
    image = smap.plot(axes=ax, cmap=CMAP, norm=TwoSlopeNorm(0.0, -limit, limit), title=title)
    colorbar = fig.colorbar(image, ax=ax, extend="both")
    colorbar.set_label("time lag [s]")
    return fig


def png_bytes(maps: LagMaps, max_lag_s: float, title: str) -> bytes:
    """:func:`lag_figure` as PNG bytes."""
    buffer = io.BytesIO()
    lag_figure(maps, max_lag_s, title).savefig(buffer, format="png")
    return buffer.getvalue()


def write_outputs(maps: LagMaps, fits_uri: str, png_uri: str, max_lag_s: float, title: str) -> None:
    """Write the FITS map and the PNG (local paths or fsspec URLs)."""
    put_bytes(fits_uri, fits_bytes(maps))
    put_bytes(png_uri, png_bytes(maps, max_lag_s, title))
