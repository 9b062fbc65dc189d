"""SQL over the local tables with DuckDB (embedded, nothing to run).

Every table a home holds is a view: the catalog tables ``sources``, ``images`` and
``alerts``; the analysis tables ``matches`` and ``injections``
(:mod:`skysift.catalog.analysis_tables`); ``objects`` and its link view ``detections``
(:mod:`skysift.catalog.objects`). The views read the Hive-partitioned Parquet files, partition
keys included as columns, so the SQL that runs on Athena runs here unchanged. Results
come back as pandas, polars or Arrow; :meth:`LocalCatalog.run_script` runs a script of
several statements and returns the result of each.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from skysift.catalog import integrity
from skysift.catalog.arrow import empty_table, python_column
from skysift.catalog.schema import PARTITION_KEYS, schema_for
from skysift.catalog.tables import TABLES
from skysift.errors import SkysiftError

if TYPE_CHECKING:  # pandas is imported by Arrow's to_pandas when a frame is asked for
    import pandas as pd

__all__ = ["LocalCatalog", "QueryError", "QueryResult", "home_tables", "split_statements"]

#: DuckDB type of a partition key, by its Arrow type.
_DUCKDB_TYPES = {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.int32(): "INTEGER"}


class QueryError(SkysiftError):
    reason = "bad_query"


@dataclass(frozen=True)
class QueryResult:
    """The rows one statement of a script returned."""

    number: int  # 1-based position of the statement in the script
    statement: str
    table: pa.Table


#: Statements run for their effect: what DuckDB returns for them (a count of rows written) is not shown.
_EFFECT_ONLY = {getattr(duckdb.StatementType, name) for name in (
    "CREATE", "CREATE_FUNC", "INSERT", "UPDATE", "DELETE", "MERGE_INTO", "DROP", "ALTER", "SET", "VARIABLE_SET",
    "TRANSACTION", "COPY", "COPY_DATABASE", "ATTACH", "DETACH", "LOAD", "EXTENSION", "EXPORT", "PREPARE", "VACUUM",
    "ANALYZE") if hasattr(duckdb.StatementType, name)}


def _parse(sql: str) -> list:
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(f"{type(exc).__name__}: {exc}".strip()) from exc
    if not statements:
        raise QueryError("no SQL statement (only comments or blanks?)")
    return statements


def split_statements(sql: str) -> list[str]:
    """The statements of ``sql``, split by DuckDB's own parser (comments and quoted ``;`` are handled).

    Raises :class:`QueryError` when the text does not parse or holds no statement.
    """
    return [s.query.strip() for s in _parse(sql)]


def home_tables(n_apertures: int = 3) -> dict[str, tuple[pa.Schema, dict[str, pa.DataType]]]:
    """Every table a home can hold: name -> (schema, partition keys and their types)."""
    from skysift.catalog.analysis_tables import ANALYSIS_TABLES
    from skysift.catalog.objects import OBJECTS_PARTITIONS, OBJECTS_SCHEMA

    catalog_keys = dict.fromkeys(PARTITION_KEYS, pa.string())
    tables = {table: (schema_for(table, n_apertures), catalog_keys) for table in TABLES}
    tables |= {table: (schema, catalog_keys) for table, schema in ANALYSIS_TABLES.items()}
    tables["objects"] = (OBJECTS_SCHEMA, OBJECTS_PARTITIONS)
    return tables


class LocalCatalog:
    """A DuckDB connection with a view over each of one skysift home's tables.

    A view over a table that had no file yet when the catalog was made stays empty:
    make a new catalog (or call :meth:`refresh`) to see tables written since.
    """

    def __init__(self, home: str | os.PathLike[str], n_apertures: int = 3) -> None:
        self.home = Path(home)
        self.n_apertures = n_apertures
        self.connection = duckdb.connect()
        self.refresh()

    def refresh(self) -> None:
        """(Re)define every table's view, and the ``detections`` view over ``objects``."""
        for table, (schema, partitions) in home_tables(self.n_apertures).items():
            try:
                self.create_view(table, schema, partitions)
            except duckdb.Error as exc:
                raise integrity.damaged_table_error(exc, self.home) or QueryError(
                    f"cannot open table {table}: {type(exc).__name__}: {exc}") from exc
        self.connection.execute("CREATE OR REPLACE VIEW detections AS "
                                "SELECT unnest(source_ids) AS source_id, object_id, sky_cell FROM objects")

    def create_view(self, table: str, schema: pa.Schema, partitions: Mapping[str, pa.DataType] | None = None) -> None:
        """(Re)define view ``table`` over its Parquet files, or empty with ``schema`` when none exist.

        ``partitions``: the Hive partition keys of the table's folders and their types
        (default: ``survey``, ``band``, ``obs_night``, all strings).
        """
        partitions = dict.fromkeys(PARTITION_KEYS, pa.string()) if partitions is None else dict(partitions)
        self.connection.execute(f"DROP VIEW IF EXISTS {table}")
        root = self.home / "tables" / table
        levels = ["*"] * len(partitions)
        if any(root.glob("/".join([*levels, "*.parquet"]))):
            pattern = str(root.joinpath(*levels, "*.parquet")).replace("'", "''")
            types = ", ".join(f"'{key}': {_DUCKDB_TYPES[kind]}" for key, kind in partitions.items())
            self.connection.execute(
                f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{pattern}', "
                f"hive_partitioning = true, union_by_name = true, hive_types = {{{types}}})"
            )
        else:
            empty = empty_table(schema)
            for key, kind in partitions.items():
                empty = empty.append_column(key, python_column([], kind))
            self.connection.register(f"_{table}_empty", empty)
            self.connection.execute(f"CREATE VIEW {table} AS SELECT * FROM _{table}_empty")

    def _error(self, exc: duckdb.Error) -> SkysiftError:
        return integrity.damaged_table_error(exc, self.home) or QueryError(f"{type(exc).__name__}: {exc}".strip())

    def _run(self, sql: str, params: dict[str, Any] | None) -> duckdb.DuckDBPyRelation:
        try:
            return self.connection.sql(sql, params=params or None)
        except duckdb.Error as exc:
            raise self._error(exc) from exc

    def sql(self, sql: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Run a query; the result as a pandas DataFrame."""
        return self.arrow(sql, params).to_pandas()

    def arrow(self, sql: str, params: dict[str, Any] | None = None) -> pa.Table:
        """Run a query; the result as an Arrow table."""
        relation = self._run(sql, params)
        try:
            return relation.to_arrow_table()
        except duckdb.Error as exc:
            raise self._error(exc) from exc

    def polars(self, sql: str, params: dict[str, Any] | None = None):
        """Run a query; the result as a polars DataFrame."""
        return self._run(sql, params).pl()

    def run_script(self, sql: str) -> list[QueryResult]:
        """Run every statement of ``sql`` in order; the result of each one that returns rows.

        Statements run for their effect (``CREATE TEMP TABLE``, ``INSERT``, ``SET``, ...) return
        no result of their own. An error names the statement it stopped at.
        """
        statements = _parse(sql)
        results = []
        for number, statement in enumerate(statements, start=1):
            text = statement.query.strip()
            try:
                relation = self.connection.sql(text)
                table = None if relation is None else relation.to_arrow_table()
            except duckdb.Error as exc:
                error = self._error(exc)
                if len(statements) > 1 and isinstance(error, QueryError):
                    error = QueryError(f"statement {number} of {len(statements)}: {error.message}")
                raise error from exc
            if table is not None and statement.type not in _EFFECT_ONLY:
                results.append(QueryResult(number, text, table))
        return results
