"""Typed errors of the time-lag workload, each with a stable ``reason`` code.

They subclass :class:`skysift.errors.SkysiftError`, so entrypoints (CLI, Batch
worker) report them the same way as the rest of skysift: a message a person can
act on plus a machine-readable reason.
"""

from __future__ import annotations

from skysift.errors import SkysiftError

__all__ = [
    "CutoutOutsideField",
    "EmptyLagMap",
    "FrameUnusable",
    "GatewayUnavailable",
    "IndexUnavailable",
    "InvalidRequest",
    "MissingDependency",
    "RemoteAccessDenied",
    "SchedulerUnavailable",
    "SeriesNotFound",
    "SeriesTooShort",
    "TimeLagError",
]


class TimeLagError(SkysiftError):
    """Base class of time-lag failures."""

    reason = "timelag_error"


class InvalidRequest(TimeLagError):
    """A time-lag request (CLI flags or JSON) is malformed or inconsistent."""

    reason = "invalid_timelag_request"


class SeriesNotFound(TimeLagError):
    """The image index holds no usable frames for a channel in the requested window."""

    reason = "series_not_found"


class SeriesTooShort(TimeLagError):
    """Too few frames, or too little overlap between channels, for a time-lag map."""

    reason = "series_too_short"


class FrameUnusable(TimeLagError):
    """A frame of the series lacks what the analysis needs (exposure, solar WCS, observer)."""

    reason = "frame_unusable"


class IndexUnavailable(TimeLagError):
    """The image index (local tables or Athena) cannot be queried."""

    reason = "index_unavailable"
    transient = True


class SchedulerUnavailable(TimeLagError):
    """The dask scheduler given with --scheduler cannot be reached."""

    reason = "scheduler_unavailable"
    transient = True


class CutoutOutsideField(InvalidRequest):
    """The requested cutout misses the solar disk or the frames' field of view: the map would be all NaN."""

    reason = "cutout_outside_field"


class EmptyLagMap(TimeLagError):
    """No pixel of the cutout has a defined lag (every series has a gap or is constant)."""

    reason = "empty_lag_map"


class MissingDependency(TimeLagError):
    """An optional package that the requested feature needs is not installed."""

    reason = "missing_dependency"


class GatewayUnavailable(TimeLagError):
    """The dask-gateway server given with --gateway cannot be reached or cannot start a cluster."""

    reason = "gateway_unavailable"
    transient = True


class RemoteAccessDenied(TimeLagError):
    """Remote frames cannot be read with the credentials at hand (none, or not allowed)."""

    reason = "remote_access_denied"
