"""Typed rows: one ``images`` row as an :class:`ImageRecord`, and the values its columns take.

An image's row travels from the pipeline to the tables, the alert rules, the AWS steps
(as JSON, between states) and back. :class:`ImageRecord` is that row with a type per
column: its fields are the columns of :data:`~skysift.catalog.schema.IMAGES_SCHEMA` in
order, then the partition keys (``survey``, ``band``, ``obs_night``), which the files keep
in their paths; :func:`schema_mismatches` checks the two agree (a test asserts it finds
nothing). The columns with a fixed set of values are enums:

``status``           :class:`ImageStatus`  ok | indexed | failed
``route``            :class:`Route`        local | small | large | index_only | inspect
``wcs_kind``         :class:`~skysift.core.astrometry.WcsKind`      celestial | helioprojective | none
``wcs_status``       :class:`~skysift.core.astrometry.WcsStatus`    valid | wcs_invalid | none
``checksum_status``  :class:`~skysift.io.fitsheader.ChecksumStatus` ok | bad | absent | unverified

They are ``StrEnum`` s: each member equals (and is stored as) its string.

Conversions: :meth:`ImageRecord.to_row` / :meth:`ImageRecord.from_row` (a plain dict, as
Arrow's ``to_pylist`` gives and takes), :meth:`ImageRecord.to_table` (the one-row Arrow
table written to ``images``), :meth:`ImageRecord.to_json` / :meth:`ImageRecord.from_json`
(the JSON the AWS steps pass through S3).
"""

from __future__ import annotations

import types
import typing
from datetime import datetime
from enum import Enum, StrEnum
from typing import Any, Self

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from skysift.catalog.arrow import table_from_rows
from skysift.catalog.schema import IMAGES_SCHEMA, PARTITION_KEYS
from skysift.core.astrometry import WcsKind, WcsStatus
from skysift.io.fitsheader import ChecksumStatus

__all__ = ["ChecksumStatus", "ImageRecord", "ImageStatus", "Route", "WcsKind", "WcsStatus", "schema_mismatches"]


class ImageStatus(StrEnum):
    """``images.status``: what became of an image."""

    OK = "ok"  # measured: its sources are in the sources table
    INDEXED = "indexed"  # described from its header, not source-extracted (a solar image)
    FAILED = "failed"  # refused or broken off; error_reason says why

    @property
    def succeeded(self) -> bool:
        """Done for good: a run does not measure it again (with the same settings)."""
        return self is not ImageStatus.FAILED


class Route(StrEnum):
    """``images.route``: which way an image went (chosen by :mod:`skysift.pipeline.router`)."""

    LOCAL = "local"  # in memory, on this machine
    SMALL = "small"  # in memory, in the AWS DetectSmall Lambda
    LARGE = "large"  # tile by tile in bounded memory (locally, or the AWS Batch job)
    INDEX_ONLY = "index_only"  # described from its header only: no pixel is decoded
    INSPECT = "inspect"  # failed on AWS before a route was chosen (its header could not be read)

    @property
    def in_memory(self) -> bool:
        return self in (Route.LOCAL, Route.SMALL)


class ImageRecord(BaseModel):
    """One row of the ``images`` table (see :mod:`skysift.catalog.schema` for units and meanings).

    Frozen: :meth:`replace` makes a changed copy (validated, like every record).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    image_id: str
    uri: str | None = None
    content_hash: str | None = None
    hdu: int | None = None
    hdu_name: str | None = None
    nx: int | None = None
    ny: int | None = None
    bytes: int | None = None
    bitpix: int | None = None
    compressed: bool | None = None
    wcs_kind: WcsKind | None = None
    checksum_status: ChecksumStatus | None = None
    telescope: str | None = None
    instrument: str | None = None
    wavelength_angstrom: float | None = None
    obs_time: datetime | None = None
    exptime_s: float | None = None
    status: ImageStatus
    route: Route
    error_reason: str | None = None
    error_message: str | None = None
    n_sources: int | None = None
    background_level: float | None = None
    background_rms: float | None = None
    pixel_scale_arcsec: float | None = None
    seeing_fwhm_px: float | None = None
    seeing_fwhm_arcsec: float | None = None
    zero_point_ab: float | None = None
    zero_point_source: str | None = None
    limit_flux_5sigma: float | None = None
    limit_mag_5sigma: float | None = None
    completeness_mag50: float | None = None
    completeness_mag90: float | None = None
    center_ra: float | None = None
    center_dec: float | None = None
    radius_deg: float | None = None
    corners_ra: list[float] | None = None
    corners_dec: list[float] | None = None
    wcs_header: str | None = None
    wcs_status: WcsStatus | None = None
    wcs_message: str | None = None
    detection_threshold_sigma: float | None = None
    noise_correlation_factor: float | None = None
    crowded: bool | None = None
    filter_fwhm_px: float | None = None
    aperture_radii_px: list[float] | None = None
    read_s: float | None = None
    background_s: float | None = None
    detect_s: float | None = None
    measure_s: float | None = None
    total_s: float | None = None
    processed_at: datetime | None = None
    software_version: str | None = None
    settings_hash: str | None = None
    # the partition keys: in the files' paths, not in their columns
    survey: str = "unknown"
    band: str = "unknown"
    obs_night: str = "unknown"

    # -- conversions -------------------------------------------------------------------------
    @classmethod
    def from_row(cls, row: typing.Mapping[str, Any]) -> Self:
        """The record of a row read back (Arrow's ``to_pylist``, a JSON document); keys that
        are not columns (older documents carried timings such as ``n_tiles``) are left out."""
        return cls.model_validate({key: value for key, value in row.items() if key in cls.model_fields})

    def to_row(self) -> dict[str, Any]:
        """Every column and partition key as plain Python values (enums as their strings)."""
        return {key: (value.value if isinstance(value, Enum) else value) for key, value in self}

    def to_table(self) -> pa.Table:
        """This row as a one-row Arrow table of :data:`IMAGES_SCHEMA` (partition keys left out:
        they are in the path)."""
        row = self.to_row()
        return table_from_rows([row], IMAGES_SCHEMA)

    def to_json(self) -> dict[str, Any]:
        """:meth:`to_row` with times as ISO strings: a JSON-ready document (floats as they are, NaN included)."""
        return {key: (value.isoformat() if isinstance(value, datetime) else value) for key, value in self.to_row().items()}

    @classmethod
    def from_json(cls, document: typing.Mapping[str, Any]) -> Self:
        """The record of a :meth:`to_json` document (ISO times parsed back)."""
        return cls.from_row(document)

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes``, validated."""
        return self.model_validate(dict(self) | changes)

    # -- what the columns say -----------------------------------------------------------------
    @property
    def partition(self) -> dict[str, str]:
        """The partition keys and their values (``survey``, ``band``, ``obs_night``)."""
        return {key: getattr(self, key) for key in PARTITION_KEYS}

    @property
    def succeeded(self) -> bool:
        return self.status.succeeded


#: The Python type of each Arrow type of the schema.
_PYTHON_TYPES: list[tuple[typing.Callable[[pa.DataType], bool], type]] = [
    (pa.types.is_string, str), (pa.types.is_integer, int), (pa.types.is_floating, float),
    (pa.types.is_boolean, bool), (pa.types.is_timestamp, datetime), (pa.types.is_list, list),
]


def _python_type(arrow: pa.DataType) -> type:
    return next(kind for test, kind in _PYTHON_TYPES if test(arrow))


def _annotation_parts(annotation: Any) -> tuple[set[Any], bool]:
    """The non-None types of a field's annotation, and whether it admits None."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = set(typing.get_args(annotation))
        return args - {type(None)}, type(None) in args
    return {annotation}, False


def schema_mismatches(model: type[BaseModel] = ImageRecord, schema: pa.Schema = IMAGES_SCHEMA) -> list[str]:
    """Where a record type and its table's schema disagree (an empty list: nowhere); by
    default :class:`ImageRecord` and :data:`IMAGES_SCHEMA`.

    The fields must be the schema's columns in order, then :data:`PARTITION_KEYS`; each
    field's type must be the Python type of its column's Arrow type (an enum of strings
    for a string column), and may be None only where the column is nullable.
    """
    expected = [*schema.names, *PARTITION_KEYS]
    fields = model.model_fields
    problems = [] if list(fields) == expected else [f"fields {list(fields)} are not the columns {expected}"]
    for column in schema:
        if column.name not in fields:
            continue
        kinds, optional = _annotation_parts(fields[column.name].annotation)
        [kind] = kinds
        origin = typing.get_origin(kind) or kind
        wanted = _python_type(column.type)
        same = origin is wanted or (wanted is str and isinstance(origin, type) and issubclass(origin, StrEnum))
        if wanted is list:  # and the items' type too
            same = same and typing.get_args(kind) == (_python_type(column.type.value_type),)
        if not same:
            name = kind.__name__ if isinstance(kind, type) else str(kind)
            problems.append(f"{column.name}: {name} for an Arrow {column.type}")
        if optional and not column.nullable:  # (a record may be stricter: every record has a status)
            problems.append(f"{column.name}: non-null column, optional field")
    return problems
