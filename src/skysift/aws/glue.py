"""Glue column types for the skysift table schemas.

The template declares the Glue tables (so that parallel writers never race on the
schema); this module maps the Arrow schemas of :mod:`skysift.schema` onto Glue/Hive
types, which the tests compare with ``template.yaml`` so the two cannot drift.
"""

from __future__ import annotations

import pyarrow as pa

from ..schema import PARTITION_KEYS, schema_for

TABLES = ("sources", "images", "alerts")


def glue_type(arrow_type: pa.DataType) -> str:
    """The Glue (Hive) type name of an Arrow type."""
    simple = {
        pa.string(): "string", pa.int32(): "int", pa.int64(): "bigint", pa.float32(): "float",
        pa.float64(): "double", pa.bool_(): "boolean",
    }
    if arrow_type in simple:
        return simple[arrow_type]
    if pa.types.is_timestamp(arrow_type):
        return "timestamp"
    if pa.types.is_list(arrow_type):
        return f"array<{glue_type(arrow_type.value_type)}>"
    raise TypeError(f"no Glue type for {arrow_type}")


def glue_columns(table: str) -> list[dict[str, str]]:
    """``[{"Name", "Type"}, ...]`` of a table, partition keys excluded."""
    return [{"Name": f.name, "Type": glue_type(f.type)} for f in schema_for(table)]


def partition_keys() -> list[dict[str, str]]:
    return [{"Name": key, "Type": "string"} for key in PARTITION_KEYS]
