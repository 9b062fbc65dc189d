"""Query results as people and programs read them: a text table, CSV, JSON or Parquet.

Arrow end to end, so types survive the trip: an integer column with nulls stays
integer (``255``, never ``255.0`` as through pandas), a coordinate keeps every digit
(the shortest text that reads back as the same double), a float32 column prints as
float32 (``18.51``, not ``18.510000228881836``), an exact integer sum (DuckDB's
``HUGEINT``) is an integer, timestamps are ISO 8601 with their zone, and lists and
structs are JSON text in CSV and nested values in JSON. Nothing is rounded or cut:
a terminal may fold a long value, it never loses one.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import io
import json
import math
import os
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

__all__ = [
    "NULL_TEXT",
    "cell_text",
    "csv_text",
    "is_numeric",
    "json_text",
    "normalized",
    "text_rows",
    "write_parquet",
]

#: Text of a null value in a printed table.
NULL_TEXT = "NULL"


def _nested(kind: pa.DataType) -> bool:
    return pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind) \
        or pa.types.is_struct(kind) or pa.types.is_map(kind)


def normalized(table: pa.Table) -> pa.Table:
    """``table`` with the types text formats cannot carry as they are made plain.

    float32 becomes the float64 of its shortest decimal text (``18.51``), and an
    integral decimal (``SUM`` of integers) becomes int64 when it fits.
    """
    columns = []
    for column in table.columns:
        kind = column.type
        if pa.types.is_float32(kind) or pa.types.is_float16(kind):
            column = pc.cast(pc.cast(column, pa.string()), pa.float64())
        elif pa.types.is_decimal(kind) and kind.scale == 0:
            with contextlib.suppress(pa.ArrowInvalid):  # larger than int64: stays an exact decimal
                column = pc.cast(column, pa.int64())
        columns.append(column)
    return pa.table(columns, names=table.column_names)


def _plain(value: Any) -> Any:
    """A Python value from Arrow as JSON knows it (null for NaN and infinities: JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "total_seconds"):  # timedelta
        return value.total_seconds()
    return value


def cell_text(value: Any) -> str:
    """One value as printed in a table: every digit of a float, ISO timestamps, NULL for null."""
    if value is None:
        return NULL_TEXT
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dict | list | tuple):
        return json.dumps(_plain(value))
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def text_rows(table: pa.Table, limit: int | None = None) -> list[list[str]]:
    """The first ``limit`` rows (all when None) of ``table`` as text cells, column by column."""
    shown = normalized(table.slice(0, limit) if limit is not None else table)
    columns = [[cell_text(v) for v in column.to_pylist()] for column in shown.columns]
    return [list(row) for row in zip(*columns, strict=True)] if columns else []


def is_numeric(kind: pa.DataType) -> bool:
    """Whether a column of this type is right-aligned in a printed table."""
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)


def csv_text(table: pa.Table) -> str:
    """``table`` as CSV: a header line, then one line per row; empty fields for nulls."""
    table = normalized(table)
    columns = []
    for column in table.columns:
        if _nested(column.type):
            column = pa.array([None if v is None else json.dumps(_plain(v)) for v in column.to_pylist()], pa.string())
        elif pa.types.is_timestamp(column.type) or pa.types.is_time(column.type):  # ISO 8601, as in JSON
            column = pa.array([None if v is None else v.isoformat() for v in column.to_pylist()], pa.string())
        columns.append(column)
    header = io.StringIO()
    csv.writer(header, lineterminator="\n").writerow(table.column_names)
    plain = pa.table(columns, names=table.column_names)
    for quoting in ("none", "needed"):  # quotes only when a value holds a comma, a quote or a newline
        sink = io.BytesIO()
        try:
            pacsv.write_csv(plain, sink, write_options=pacsv.WriteOptions(include_header=False, quoting_style=quoting))
        except pa.ArrowInvalid:
            continue
        break
    return header.getvalue() + sink.getvalue().decode()


def json_text(table: pa.Table) -> str:
    """``table`` as a JSON array of objects, one per row, with JSON's own types."""
    rows = [{key: _plain(value) for key, value in row.items()} for row in normalized(table).to_pylist()]
    return json.dumps(rows, allow_nan=False)


def write_parquet(table: pa.Table, path: str | os.PathLike[str]) -> str:
    """``table`` as a Parquet file at ``path``, every type as the query returned it."""
    pq.write_table(table, path, compression="zstd")
    return os.fspath(path)
