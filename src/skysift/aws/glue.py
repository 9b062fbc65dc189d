"""Glue column types for the skysift table schemas.

The template declares the Glue tables (so that parallel writers never race on the
schema); this module maps the Arrow schemas of :mod:`skysift.catalog.schema` onto Glue/Hive
types, which the tests compare with ``template.yaml`` so the two cannot drift.
"""

from __future__ import annotations

import pyarrow as pa

from skysift.catalog.schema import PARTITION_KEYS, schema_for

__all__ = [
    "TABLES",
    "columns_yaml",
    "glue_columns",
    "glue_type",
    "partition_keys",
    "sync_template",
]

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


def columns_yaml(table: str, indent: int = 12) -> str:
    """The ``Columns:`` entries of a table for template.yaml, with units and descriptions as comments."""
    lines = []
    for field in schema_for(table):
        meta = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
        comment = (meta.get("description", "") + (f" [{meta['unit']}]" if meta.get("unit") else "")).strip()
        comment = comment.replace('"', "'")
        entry = f"{' ' * indent}- {{Name: {field.name}, Type: '{glue_type(field.type)}'"
        lines.append(entry + (f', Comment: "{comment}"}}' if comment else "}"))
    return "\n".join(lines)


def sync_template(path: str) -> bool:
    """Rewrite the Glue table columns of template.yaml from the schemas; True if it changed."""
    import re
    from pathlib import Path

    text = Path(path).read_text()
    updated = text
    for table in TABLES:
        pattern = re.compile(
            r"(        Name: " + table + r"\n(?:.*\n)*?          Columns:\n)((?:            - \{.*\}\n)+)")
        updated = pattern.sub(lambda m, t=table: m.group(1) + columns_yaml(t) + "\n", updated, count=1)
    if updated != text:
        Path(path).write_text(updated)
    return updated != text


if __name__ == "__main__":  # python -m skysift.aws.glue template.yaml
    import sys

    print("updated" if sync_template(sys.argv[1] if len(sys.argv) > 1 else "template.yaml") else "unchanged")
