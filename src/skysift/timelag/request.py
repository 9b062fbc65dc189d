"""The time-lag request: one typed object built by the CLI, or parsed from JSON by the Batch worker.

Example JSON (what a ``TimeLagAnalysis`` execution passes to the container)::

    {"channel_a": 193, "channel_b": 171,
     "start": "2011-02-15T00:00:00Z", "end": "2011-02-15T12:00:00Z",
     "center_arcsec": [-125, 250], "fov_arcsec": [500, 500],
     "cadence_s": 240, "max_lag_s": 21600,
     "index": "athena://skysift?workgroup=skysift",
     "output": "s3://skysift-results/timelag/ar11158/lag.fits"}
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..storage import read_bytes
from .errors import InvalidRequest


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
    index: str = Field(description="home directory of the local tables, or athena://DATABASE?workgroup=...")
    output: str = Field(description="FITS result: local path or s3:// URL")
    png: str | None = Field(None, description="PNG plot; default: the output name with .png")
    scheduler: str | None = Field(
        None, description="address of an existing dask scheduler, or threads|sync; default: a LocalCluster")
    workers: int = Field(2, ge=1, description="workers of the LocalCluster when no scheduler is given")
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
        return self

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
        from its environment, so callers need not know the Glue database).
        """
        raw = read_bytes(str(uri))
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise InvalidRequest(f"request is not valid JSON: {exc}", uri=str(uri)) from exc
        if not isinstance(data, dict):
            raise InvalidRequest("request JSON must be an object", uri=str(uri))
        merged = {k: v for k, v in (defaults or {}).items() if v is not None} | data
        return cls.parse(merged)
