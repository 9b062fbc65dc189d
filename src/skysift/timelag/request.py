"""The time-lag request: one typed object built by the CLI, or parsed from JSON by the Batch worker.

Example JSON (what a ``TimeLagAnalysis`` execution passes to the container)::

    {"channel_a": 193, "channel_b": 171,
     "start": "2011-02-15T00:00:00Z", "end": "2011-02-15T12:00:00Z",
     "center_arcsec": [-125, 250], "fov_arcsec": [500, 500],
     "cadence_s": 240, "max_lag_s": 21600,
     "index": "athena://skysift?workgroup=skysift",
     "output": "s3://skysift-results/timelag/ar11158/lag.fits"}

Instead of ``index``, ``frames`` may name the frames directly (URLs, paths or manifests,
e.g. what a HelioCloud CloudCatalog search returned), with ``"anon": true`` for public
buckets::

    {..., "frames": ["s3://gov-nasa-hdrl-data1/sdo/aia/20110215/0171/...fits", ...], "anon": true}
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from skysift.io.storage import read_bytes
from skysift.timelag.errors import InvalidRequest

__all__ = ["TimeLagRequest"]


class TimeLagRequest(BaseModel):
    """Everything one time-lag map needs. Units are in the field names."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channel_a: float = Field(gt=0, description="wavelength of channel A, Angstrom (e.g. 193)")
    channel_b: float = Field(gt=0, description="wavelength of channel B, Angstrom (e.g. 171); lag > 0: B follows A")
    start: datetime = Field(description="start of the series, UTC")
    end: datetime = Field(description="end of the series, UTC")
    center_arcsec: tuple[float, float] = Field(description="cutout centre (Tx, Ty) at the reference time, arcsec")
    fov_arcsec: tuple[float, float] = Field(description="cutout width and height, arcsec")
    cadence_s: float = Field(gt=0, description="step of the common time grid, seconds")
    max_lag_s: float = Field(gt=0, description="largest |lag| searched, seconds")
    instrument: str | None = Field(None, description="match INSTRUME/TELESCOP, e.g. 'AIA'")
    scale_arcsec: float | None = Field(None, gt=0, description="cutout pixel size, arcsec/pixel; default: the reference frame's")
    reference_time: datetime | None = Field(None, description="observer and time of the cutout; default: start")
    index: str | None = Field(
        None, description="home directory of the local tables, or athena://DATABASE?workgroup=...; not with frames")
    frames: tuple[str, ...] | None = Field(
        None, description="the frames themselves (paths, s3:// or https URLs, manifests) instead of an index search")
    anon: bool = Field(False, description="read remote frames from S3 anonymously (public buckets); outputs still use credentials")
    output: str = Field(description="FITS result: local path or s3:// URL")
    png: str | None = Field(None, description="PNG plot; default: the output name with .png")
    scheduler: str | None = Field(
        None, description="address of an existing dask scheduler, or threads|sync; default: a LocalCluster")
    gateway: str | None = Field(None, description="address of a dask-gateway server: a new cluster is started there")
    cluster_options: dict[str, Any] = Field(
        default_factory=dict, description="dask-gateway cluster options (image, worker_cores, ...) with --gateway")
    workers: int = Field(2, ge=1, description="workers of the LocalCluster, or of the gateway cluster")
    tile_px: int = Field(128, ge=16, description="spatial chunk of the cube, pixels")

    @field_validator("start", "end", "reference_time")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @model_validator(mode="after")
    def _consistent(self) -> TimeLagRequest:
        if self.end <= self.start:
            raise ValueError(f"end {self.end.isoformat()} must be after start {self.start.isoformat()}")
        if self.max_lag_s < self.cadence_s:
            raise ValueError(f"max_lag_s ({self.max_lag_s:g}) is shorter than one cadence step ({self.cadence_s:g})")
        if min(self.fov_arcsec) <= 0:
            raise ValueError(f"fov_arcsec must be positive, got {self.fov_arcsec}")
        if self.frames is not None and self.index is not None:
            raise ValueError("give either frames or an index to search, not both")
        if self.frames is None and self.index is None:
            raise ValueError("give an index to search (a skysift home or athena://...) or the frames themselves")
        if self.frames is not None and not self.frames:
            raise ValueError("frames is empty")
        if self.gateway and self.scheduler:
            raise ValueError("give either a dask scheduler or a dask-gateway address, not both")
        if self.cluster_options and not self.gateway:
            raise ValueError("cluster_options only apply to a dask-gateway cluster (gateway)")
        return self

    @property
    def storage_options(self) -> dict[str, Any]:
        """fsspec options for reading the input frames (``{"anon": True}`` for public buckets)."""
        return {"anon": True} if self.anon else {}

    @property
    def png_output(self) -> str:
        """Where the PNG goes: ``png``, else the FITS name with ``.png``."""
        if self.png:
            return self.png
        stem = self.output[: -len(".gz")] if self.output.endswith(".gz") else self.output
        for suffix in (".fits", ".fit", ".fts"):
            if stem.endswith(suffix):
                return stem[: -len(suffix)] + ".png"
        return stem + ".png"

    @classmethod
    def parse(cls, data: dict | str | bytes) -> TimeLagRequest:
        """Validate a dict or JSON text; :class:`InvalidRequest` names every bad field."""
        try:
            if isinstance(data, dict):
                return cls.model_validate(data)
            return cls.model_validate_json(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'request'}: {e['msg']}" for e in exc.errors())
            raise InvalidRequest(f"invalid time-lag request: {problems}") from exc

    @classmethod
    def load(cls, uri: str | Path, defaults: dict[str, object] | None = None) -> TimeLagRequest:
        """Read a request JSON from a local path or an ``s3://`` URL.

        ``defaults`` fill fields the JSON leaves out (the Batch worker takes ``index``
        from its environment, so callers need not know the Glue database); a request
        that lists its ``frames`` takes no default ``index``.
        """
        raw = read_bytes(str(uri))
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise InvalidRequest(f"request is not valid JSON: {exc}", uri=str(uri)) from exc
        if not isinstance(data, dict):
            raise InvalidRequest("request JSON must be an object", uri=str(uri))
        defaults = {k: v for k, v in (defaults or {}).items() if v is not None}
        if data.get("frames") is not None:
            defaults.pop("index", None)
        merged = defaults | data
        return cls.parse(merged)
