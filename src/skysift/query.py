"""SQL over the local tables with DuckDB (embedded, nothing to run).

The views ``sources``, ``images`` and ``alerts`` read the Hive-partitioned Parquet
files, partition keys included as columns, so the SQL that runs on Athena runs here
unchanged. Results come back as pandas, polars or Arrow.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from . import integrity
from .errors import SkysiftError
from .schema import PARTITION_KEYS, schema_for
from .tables import TABLES


class QueryError(SkysiftError):
    reason = "bad_query"


class LocalCatalog:
    """A DuckDB connection with views over one skysift home's tables."""

    def __init__(self, home: str | os.PathLike[str], n_apertures: int = 3) -> None:
        self.home = Path(home)
        self.connection = duckdb.connect()
        for table in TABLES:
            try:
                self.create_view(table, schema_for(table, n_apertures))
            except duckdb.Error as exc:
                raise integrity.damaged_table_error(exc, self.home) or QueryError(
                    f"cannot open table {table}: {type(exc).__name__}: {exc}") from exc

    def create_view(self, table: str, schema: pa.Schema) -> None:
        """(Re)define view ``table`` over its Parquet files, or empty with ``schema`` when none exist."""
        self.connection.execute(f"DROP VIEW IF EXISTS {table}")
        root = self.home / "tables" / table
        if any(root.glob("*/*/*/*.parquet")):
            pattern = str(root / "*" / "*" / "*" / "*.parquet").replace("'", "''")
            types = ", ".join(f"'{key}': VARCHAR" for key in PARTITION_KEYS)
            self.connection.execute(
                f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{pattern}', "
                f"hive_partitioning = true, union_by_name = true, hive_types = {{{types}}})"
            )
        else:
            empty = pa.Table.from_pylist([], schema=schema)
            for key in PARTITION_KEYS:
                empty = empty.append_column(key, pa.array([], pa.string()))
            self.connection.register(f"_{table}_empty", empty)
            self.connection.execute(f"CREATE VIEW {table} AS SELECT * FROM _{table}_empty")

    def _run(self, sql: str, params: dict[str, Any] | None) -> duckdb.DuckDBPyRelation:
        try:
            return self.connection.sql(sql, params=params or None)
        except duckdb.Error as exc:
            damaged = integrity.damaged_table_error(exc, self.home)
            raise damaged or QueryError(f"{type(exc).__name__}: {exc}".strip()) from exc

    def sql(self, sql: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Run a query; the result as a pandas DataFrame."""
        return self.arrow(sql, params).to_pandas()

    def arrow(self, sql: str, params: dict[str, Any] | None = None) -> pa.Table:
        """Run a query; the result as an Arrow table."""
        return self._run(sql, params).to_arrow_table()

    def polars(self, sql: str, params: dict[str, Any] | None = None):
        """Run a query; the result as a polars DataFrame."""
        return self._run(sql, params).pl()
