"""Time-lag analysis of solar image series (sunpy, reproject, dask).

An observer takes hours of SDO/AIA images in two channels, cuts out an active
region, follows it as the Sun rotates, and maps per pixel the time lag that
maximises the cross-correlation between the channels (how long the plasma takes to
cool from one passband's temperature to the other's).

Modules, in pipeline order:

``index``     find a series in skysift's ``images`` table (local DuckDB or Athena): paths/URLs only
``fido``      the same search as a sunpy Fido client (``a.skysift.Index``)
``sources``   or no index: frames named directly (URLs, paths, manifests, a HelioCloud CloudCatalog search)
``frames``    headers eagerly; pixels of just the needed rectangle, local or fsspec (anon); DN -> DN/s
``align``     reference cutout; reprojection with ``propagate_with_solar_surface``
``cube``      lazy stack, rechunked along time, interpolated onto a common grid
``lag``       per-pixel FFT cross-correlation lag and peak correlation
``output``    FITS map with WCS + PNG (symmetric colour scale at the 99th percentile of |lag|)
``pipeline``  the dask graph from a :class:`~skysift.timelag.request.TimeLagRequest`
``cluster``   local ``dask.distributed`` cluster, ``--scheduler ADDRESS`` or a new ``--gateway URL`` cluster
``cli``       ``skysift timelag``;  ``worker``: the AWS Batch entrypoint;  ``logs``: dask quiet unless -v
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public names and their modules; imported on first use so that ``skysift --help`` and
#: ``skysift.cli.timelag`` do not pay for sunpy, reproject and distributed up front.
_EXPORTS = {
    "TimeLagError": "errors", "SeriesNotFound": "errors", "SeriesTooShort": "errors",
    "AthenaIndex": "index", "LocalIndex": "index", "SeriesQuery": "index", "open_index": "index",
    "FrameList": "sources", "fido_uris": "sources",
    "search_series": "index", "cross_correlation_lag": "lag", "plan_request": "pipeline",
    "run_timelag": "pipeline", "TimeLagRequest": "request",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
