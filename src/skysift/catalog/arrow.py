"""Arrow columns and Parquet files without pyarrow's import of pandas.

``pyarrow.array`` (and ``pa.scalar``, ``Array.filter`` with a NumPy mask, ...) imports
pandas the first time it is given anything, numbers included, to ask whether the input is
a pandas object. That import costs ~0.2 s of a process's start, a tenth of a one-image
``skysift run``, and every image worker paid it again on its first image. A catalog row
needs none of it: its columns are NumPy arrays of numbers, strings or one timestamp. This
module builds the same Arrow arrays as ``pa.array(values, type, from_pandas=True)`` from
the arrays' buffers (``pa.Array.from_buffers``), which imports nothing, reads numeric columns
back from their buffers, turns rows with UTC timestamps into Python values (pyarrow's own
conversion of a zoned timestamp imports pandas), and reads one Parquet file without
``pyarrow.dataset`` (whose extension imports pandas when it loads).

:func:`numpy_column` converts a NumPy column as ``from_pandas=True`` does (NaN becomes
null); :func:`python_column` and :func:`table_from_rows` convert Python values as
``pa.array`` and ``pa.Table.from_pylist`` do (None is null, NaN stays NaN). Supported:
integers, floating types, booleans, strings, timestamps (``datetime``; naive is UTC) and
lists of those. Anything else is a TypeError.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

__all__ = ["PARQUET_WRITE_OPTIONS", "empty_table", "numpy_column", "numpy_values", "python_column", "read_parquet",
           "repeated_string", "repeated_timestamp", "rows_of", "string_codes", "table_from_rows", "write_parquet"]

_NUMPY_TYPES = {
    pa.int8(): np.int8, pa.int16(): np.int16, pa.int32(): np.int32, pa.int64(): np.int64,
    pa.uint8(): np.uint8, pa.uint16(): np.uint16, pa.uint32(): np.uint32, pa.uint64(): np.uint64,
    pa.float16(): np.float16, pa.float32(): np.float32, pa.float64(): np.float64,
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TIME_UNITS = {"s": timedelta(seconds=1), "ms": timedelta(milliseconds=1),
               "us": timedelta(microseconds=1)}


def _validity(valid: np.ndarray) -> pa.Buffer | None:
    """Arrow's validity bitmap of a boolean array (None when every value is valid)."""
    if valid.all():
        return None
    return pa.py_buffer(np.packbits(valid, bitorder="little"))


def numpy_column(values: np.ndarray | Sequence, type_: pa.DataType, mask: np.ndarray | None = None, *,
                 nan_is_null: bool = True) -> pa.Array:
    """``values`` as an Arrow array of ``type_``: the array ``pa.array(values, type_,
    from_pandas=nan_is_null, mask=mask)`` gives (null where ``mask`` is True; NaN null too
    unless ``nan_is_null`` is False), without importing pandas."""
    values = np.asarray(values)
    n = len(values)
    if values.dtype == object and (type_ in _NUMPY_TYPES or pa.types.is_boolean(type_)):  # None for null
        absent = np.fromiter((value is None for value in values), bool, count=n)
        with np.errstate(over="ignore"):  # beyond float32: inf, as pyarrow gives
            values = np.where(absent, 0, values).astype(bool if pa.types.is_boolean(type_) else _NUMPY_TYPES[type_])
        mask = absent if mask is None else absent | np.asarray(mask, bool)
    if type_ in _NUMPY_TYPES or pa.types.is_boolean(type_):
        if pa.types.is_boolean(type_):
            data = np.packbits(np.asarray(values, dtype=bool), bitorder="little")
            valid = np.ones(n, bool)
        else:
            with np.errstate(over="ignore"):
                data = np.ascontiguousarray(values, dtype=_NUMPY_TYPES[type_])
            valid = ~np.isnan(data) if data.dtype.kind == "f" and nan_is_null else np.ones(n, bool)
        if mask is not None:
            valid &= ~np.asarray(mask, bool)
        return pa.Array.from_buffers(type_, n, [_validity(valid), pa.py_buffer(data)], null_count=int(n - valid.sum()))
    if mask is not None:
        raise TypeError(f"no masked NumPy conversion to Arrow {type_}")
    if pa.types.is_string(type_):
        return _strings(values, n)
    if pa.types.is_timestamp(type_):
        return _timestamps(values, type_)
    raise TypeError(f"no NumPy conversion to Arrow {type_}")


def _strings(values: np.ndarray, n: int) -> pa.Array:
    valid = np.fromiter((value is not None for value in values), bool, count=n)
    encoded = [value.encode() if value is not None else b"" for value in values]
    data = b"".join(encoded)
    lengths = np.fromiter(map(len, encoded), np.int64, count=n)
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return _string_array(offsets, data, _validity(valid), int(n - valid.sum()))


def _string_array(offsets: np.ndarray, data: bytes, validity: pa.Buffer | None, null_count: int) -> pa.Array:
    """Arrow's string array of ``data`` cut at ``offsets`` (int64, one more than the strings)."""
    if offsets[-1] > np.iinfo(np.int32).max:  # Arrow's string type has 32-bit offsets
        raise ValueError(f"string column of {offsets[-1]:,} bytes: more than Arrow's string type holds (2 GiB)")
    return pa.Array.from_buffers(pa.string(), len(offsets) - 1,
                                 [validity, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)],
                                 null_count=null_count)


def _ticks(value: datetime | None, unit: timedelta) -> int:
    """Whole ``unit`` since the epoch (a naive datetime is taken as UTC), exactly; 0 for None."""
    if value is None:
        return 0
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // unit


def _timestamps(values: np.ndarray, type_: pa.TimestampType) -> pa.Array:
    if type_.unit not in _TIME_UNITS:
        raise TypeError(f"no NumPy conversion to Arrow {type_}")
    unit = _TIME_UNITS[type_.unit]
    valid = np.fromiter((value is not None for value in values), bool, count=len(values))
    ticks = np.fromiter((_ticks(value, unit) for value in values), np.int64, count=len(values))
    return pa.Array.from_buffers(type_, len(values), [_validity(valid), pa.py_buffer(ticks)],
                                 null_count=int(len(values) - valid.sum()))


def repeated_timestamp(value: datetime | None, n: int, type_: pa.TimestampType) -> pa.Array:
    """``n`` copies of one timestamp (None: nulls), as ``pa.array([value] * n, type_)``."""
    if type_.unit not in _TIME_UNITS:
        raise TypeError(f"no NumPy conversion to Arrow {type_}")
    ticks = np.full(n, _ticks(value, _TIME_UNITS[type_.unit]), np.int64)
    validity, null_count = _repeated_validity(value is None, n)
    return pa.Array.from_buffers(type_, n, [validity, pa.py_buffer(ticks)], null_count=null_count)


def _repeated_validity(null: bool, n: int) -> tuple[pa.Buffer | None, int]:
    """The validity bitmap and null count of ``n`` copies of one value, null or not."""
    if not null or n == 0:
        return None, 0
    return pa.py_buffer(np.zeros((n + 7) // 8, np.uint8)), n


def repeated_string(value: str | None, n: int) -> pa.Array:
    """``n`` copies of one string (None: nulls), as ``pa.array([value] * n, pa.string())``: the
    bytes once per copy, without a Python object per row (a partition's band beside each of a
    file's rows)."""
    encoded = b"" if value is None else value.encode()
    return _string_array(np.arange(n + 1, dtype=np.int64) * len(encoded), encoded * n,
                         *_repeated_validity(value is None, n))


def python_column(values: Sequence[Any], type_: pa.DataType) -> pa.Array:
    """Python values (None for null) as an Arrow array of ``type_``: the array
    ``pa.array(values, type_)`` gives (NaN stays NaN), without importing pandas."""
    n = len(values)
    valid = np.fromiter((value is not None for value in values), bool, count=n)
    if pa.types.is_list(type_):
        items = [item for value in values if value is not None for item in value]
        offsets = np.zeros(n + 1, np.int32)
        np.cumsum([len(value) if value is not None else 0 for value in values], out=offsets[1:])
        child = python_column(items, type_.value_type)
        return pa.ListArray.from_buffers(type_, n, [_validity(valid), pa.py_buffer(offsets)],
                                         null_count=int(n - valid.sum()), children=[child])
    if pa.types.is_string(type_) or pa.types.is_timestamp(type_):
        return numpy_column(np.array(values, dtype=object) if n else np.empty(0, object), type_)
    if type_ in _NUMPY_TYPES or pa.types.is_boolean(type_):
        filled = [value if value is not None else 0 for value in values]
        dtype = bool if pa.types.is_boolean(type_) else _NUMPY_TYPES[type_]
        data = np.array(filled, dtype=dtype) if n else np.empty(0, dtype)
        if pa.types.is_boolean(type_):
            buffer = pa.py_buffer(np.packbits(data, bitorder="little"))
        else:
            buffer = pa.py_buffer(np.ascontiguousarray(data))
        return pa.Array.from_buffers(type_, n, [_validity(valid), buffer], null_count=int(n - valid.sum()))
    raise TypeError(f"no Python conversion to Arrow {type_}")


def table_from_rows(rows: Sequence[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows (mappings of column name to Python value; a missing key is null) as a table of
    ``schema``: the table ``pa.Table.from_pylist(rows, schema=schema)`` gives."""
    return pa.Table.from_arrays([python_column([row.get(f.name) for row in rows], f.type) for f in schema], schema=schema)


def string_codes(column: pa.Array | pa.ChunkedArray, null: str) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of a string column, sorted, and the index of each row's among them: what
    ``np.unique(numpy_values(column, null=null), return_inverse=True)`` gives, without a Python
    string per row (Arrow's dictionary encoding, then a sort of the few distinct values)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    encoded = pc.dictionary_encode(array.fill_null(null) if array.null_count else array)
    distinct = np.empty(len(encoded.dictionary), object)
    distinct[:] = encoded.dictionary.to_pylist()
    rank = np.argsort(distinct, kind="stable")
    place = np.empty(len(rank), np.int64)
    place[rank] = np.arange(len(rank))
    return distinct[rank], place[numpy_values(encoded.indices).astype(np.int64, copy=False)]


def numpy_values(column: pa.Array | pa.ChunkedArray, null: Any = None) -> np.ndarray:
    """The values of an Arrow column as a NumPy array, as ``column.fill_null(null).to_numpy(
    zero_copy_only=False)`` gives them, without pyarrow's import of pandas.

    Numbers keep their type, nulls becoming ``null`` (None: NaN, in float64 for an integer
    column that has any); booleans are a bool array (nulls are ``null``, None: False);
    strings an object array (nulls ``null``). Other types are a TypeError."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    type_ = column.type
    if pa.types.is_string(type_) or pa.types.is_large_string(type_):
        values = np.empty(len(column), object)
        values[:] = [null if value is None else value for chunk in chunks for value in chunk.to_pylist()]
        return values
    if pa.types.is_boolean(type_):
        dtype = np.dtype(bool)
    elif type_ in _NUMPY_TYPES:
        dtype = np.dtype(_NUMPY_TYPES[type_])
    else:
        raise TypeError(f"no Arrow {type_} to NumPy conversion")
    if null is None and dtype.kind in "iu" and column.null_count:
        dtype, null = np.dtype(np.float64), np.nan
    elif null is None:
        null = False if dtype.kind == "b" else np.nan
    parts = [_chunk_values(chunk, dtype, null) for chunk in chunks]
    if not parts:
        return np.empty(0, dtype)
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def _bits(buffer: pa.Buffer, offset: int, n: int) -> np.ndarray:
    """``n`` bits of an Arrow bitmap from bit ``offset``, as booleans."""
    return np.unpackbits(np.frombuffer(buffer, np.uint8), count=offset + n, bitorder="little")[offset:].astype(bool)


def _chunk_values(chunk: pa.Array, dtype: np.dtype, null: Any) -> np.ndarray:
    n = len(chunk)
    if n == 0:
        return np.empty(0, dtype)
    validity, data = chunk.buffers()[:2]
    if dtype.kind == "b":
        values = _bits(data, chunk.offset, n)
    else:
        values = np.frombuffer(data, np.dtype(_NUMPY_TYPES[chunk.type]), count=chunk.offset + n)[chunk.offset:]
        values = values.astype(dtype)  # a copy: the buffer is Arrow's and read-only
    if chunk.null_count:
        values[~_bits(validity, chunk.offset, n)] = null
    return values


def read_parquet(path: str | os.PathLike[str], columns: Sequence[str] | None = None) -> pa.Table:
    """One Parquet file's table (its ``columns``, all when None): ``pq.read_table(path, columns=columns)``
    for a single file, which needs no dataset discovery."""
    with pq.ParquetFile(path) as file:
        return file.read(columns=columns)


#: How skysift writes its table files: zstd, without dictionary pages. Arrow's default tries a
#: dictionary for every column, but a table file's strings are ids that do not repeat
#: (source_id, object_id, their lists) or that zstd takes as well as a dictionary (an image's
#: own keys): a 2048^2 image's sources file (981 rows, 37 columns) is written in 2.96-3.08 ms
#: instead of 5.72 and is 19% smaller; an objects cell (879 objects) in 1.33 ms instead of
#: 2.40-2.76, 18% smaller. Read back, every column is the same.
PARQUET_WRITE_OPTIONS: dict[str, Any] = {"compression": "zstd", "use_dictionary": False}


def write_parquet(table: pa.Table, where: str | os.PathLike[str] | Any, **options: Any) -> None:
    """``pq.write_table(table, where)`` with :data:`PARQUET_WRITE_OPTIONS` (and ``options``, e.g. a row group size)."""
    pq.write_table(table, where, **PARQUET_WRITE_OPTIONS, **options)


def rows_of(table: pa.Table) -> list[dict[str, Any]]:
    """The table's rows as dicts of Python values: ``table.to_pylist()``, with UTC timestamps
    made from the naive ones (the same aware datetimes)."""
    utc = [i for i, f in enumerate(table.schema) if pa.types.is_timestamp(f.type) and f.type.tz in ("UTC", "+00:00")]
    for i in utc:
        table = table.set_column(i, table.field(i).with_type(pa.timestamp(table.field(i).type.unit)),
                                 table.column(i).cast(pa.timestamp(table.field(i).type.unit)))
    rows = table.to_pylist()
    names = [table.field(i).name for i in utc]
    for row in rows:
        for name in names:
            if row[name] is not None:
                row[name] = row[name].replace(tzinfo=UTC)
    return rows


def empty_table(schema: pa.Schema) -> pa.Table:
    """A table of ``schema`` without rows: ``schema.empty_table()`` (columns of no chunks)."""
    return pa.Table.from_batches([], schema=schema)
