"""Finding an image series in skysift's ``images`` index, without downloading anything.

The search is one SQL query against the ``images`` table, run by a backend:

* :class:`LocalIndex`: the Hive-partitioned Parquet tables under ``{home}/tables``
  (DuckDB), the same tables ``skysift run`` writes;
* :class:`AthenaIndex`: the Glue table the AWS deployment writes, through
  ``awswrangler.athena.read_sql_query``.

Both return file paths or ``s3://`` URLs with the observation time and exposure of
each frame; the pixels stay where they are until the dask tasks read them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qs, urlparse

import pandas as pd

from skysift.catalog.query import LocalCatalog, QueryError
from skysift.timelag.errors import IndexUnavailable, InvalidRequest, SeriesNotFound

__all__ = [
    "COLUMNS",
    "WAVELENGTH_TOLERANCE_ANGSTROM",
    "AthenaIndex",
    "IndexBackend",
    "LocalIndex",
    "SeriesQuery",
    "open_index",
    "require_series",
    "search_series",
]

#: A frame matches a wavelength when within this many Angstrom (AIA channels are integers).
WAVELENGTH_TOLERANCE_ANGSTROM = 0.5

COLUMNS = (
    "image_id", "uri", "hdu", "obs_time", "exptime_s", "wavelength_angstrom",
    "telescope", "instrument", "nx", "ny", "survey", "band",
)


@runtime_checkable
class IndexBackend(Protocol):
    """Anything that runs SQL on a table of images and returns a DataFrame."""

    #: Name of the images table in this backend's SQL namespace.
    images_table: str

    def sql(self, query: str) -> pd.DataFrame:
        """Run ``query`` and return the result."""

    def timestamp_literal(self, when: datetime) -> str:
        """A SQL literal comparable with the ``obs_time`` column (UTC)."""


class LocalIndex:
    """The local ``images`` table (Hive-partitioned Parquet under ``{home}/tables/images``).

    Queried through :class:`skysift.catalog.query.LocalCatalog`, the catalogue ``skysift query`` uses.
    """

    images_table = "images"

    def __init__(self, home: str | Path) -> None:
        self.home = Path(home).expanduser()
        root = self.home / "tables" / "images"
        if not root.is_dir():
            raise IndexUnavailable(
                f"no images table under {self.home} (expected {root}): index the series first "
                "(`skysift run DIR`) or point --index / SKYSIFT_HOME at the right home",
                uri=str(self.home),
            )
        self._catalog = LocalCatalog(self.home)

    def sql(self, query: str) -> pd.DataFrame:
        try:
            return self._catalog.sql(query)
        except QueryError as exc:
            raise IndexUnavailable(f"query of the local images table failed: {exc}", uri=str(self.home)) from exc

    def timestamp_literal(self, when: datetime) -> str:
        return f"TIMESTAMPTZ '{_utc(when).isoformat()}'"


class AthenaIndex:
    """The Glue ``images`` table, queried with Athena through awswrangler.

    Parameters
    ----------
    database : str
        Glue database holding the table.
    table : str
        Table name (default ``images``).
    workgroup, s3_output : str, optional
        Athena workgroup and query-result location (one of them must be configured).
    boto3_session : boto3.Session, optional
    """

    def __init__(self, database: str, *, table: str = "images", workgroup: str | None = None,
                 s3_output: str | None = None, boto3_session: Any = None) -> None:
        self.database = database
        self.images_table = table
        self.workgroup = workgroup
        self.s3_output = s3_output
        self.boto3_session = boto3_session

    def sql(self, query: str) -> pd.DataFrame:
        import awswrangler as wr

        try:
            return wr.athena.read_sql_query(
                query,
                database=self.database,
                workgroup=self.workgroup,
                s3_output=self.s3_output,
                ctas_approach=False,
                boto3_session=self.boto3_session,
            )
        except Exception as exc:  # botocore / awswrangler raise many types
            raise IndexUnavailable(f"Athena query on {self.database}.{self.images_table} failed: {exc}") from exc

    def timestamp_literal(self, when: datetime) -> str:
        return f"TIMESTAMP '{_utc(when).replace(tzinfo=None).isoformat(sep=' ', timespec='milliseconds')}'"


def open_index(spec: str | Path | IndexBackend) -> IndexBackend:
    """A backend from a spec: a home directory, or ``athena://DATABASE?workgroup=W&output=s3://...&table=T``."""
    if isinstance(spec, IndexBackend):
        return spec
    text = str(spec)
    if text.startswith("athena://"):
        parsed = urlparse(text)
        params = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        if not parsed.netloc:
            raise InvalidRequest(f"athena index spec needs a database: athena://DATABASE, got {text!r}")
        return AthenaIndex(parsed.netloc, table=params.get("table", "images"),
                           workgroup=params.get("workgroup"), s3_output=params.get("output"))
    return LocalIndex(text)


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


_SAFE_TEXT = re.compile(r"^[A-Za-z0-9_./ -]{1,64}$")


@dataclass(frozen=True)
class SeriesQuery:
    """One channel's series: a time window, a wavelength and optionally an instrument.

    Times are UTC; ``wavelength_angstrom`` matches within
    :data:`WAVELENGTH_TOLERANCE_ANGSTROM`, or give ``wavelength_max_angstrom`` for a range.
    ``instrument`` matches, case-insensitively, part of INSTRUME or TELESCOP
    (``"AIA"`` matches ``AIA_3`` and ``SDO/AIA``).
    """

    start: datetime
    end: datetime
    wavelength_angstrom: float | None = None
    wavelength_max_angstrom: float | None = None
    instrument: str | None = None

    def __post_init__(self) -> None:
        if _utc(self.end) <= _utc(self.start):
            raise InvalidRequest(f"end {self.end.isoformat()} is not after start {self.start.isoformat()}")
        if self.instrument is not None and not _SAFE_TEXT.match(self.instrument):
            raise InvalidRequest(f"instrument name {self.instrument!r} has characters other than letters, digits, _./ -")

    def to_sql(self, backend: IndexBackend) -> str:
        """The SELECT statement for ``backend``'s dialect; partition-pruned by night."""
        start, end = _utc(self.start), _utc(self.end)
        nights = (start.date().isoformat(), end.date().isoformat())
        where = [
            "wcs_kind = 'helioprojective'",
            "status IN ('ok', 'indexed')",
            f"obs_night BETWEEN '{nights[0]}' AND '{nights[1]}'",
            f"obs_time >= {backend.timestamp_literal(start)}",
            f"obs_time <= {backend.timestamp_literal(end)}",
        ]
        if self.wavelength_angstrom is not None:
            high = self.wavelength_max_angstrom if self.wavelength_max_angstrom is not None else self.wavelength_angstrom
            lo = float(self.wavelength_angstrom) - WAVELENGTH_TOLERANCE_ANGSTROM
            hi = float(high) + WAVELENGTH_TOLERANCE_ANGSTROM
            where.append(f"wavelength_angstrom BETWEEN {lo!r} AND {hi!r}")
        if self.instrument:
            needle = self.instrument.lower().replace("'", "")
            where.append(f"(lower(instrument) LIKE '%{needle}%' OR lower(telescope) LIKE '%{needle}%')")
        return (
            f"SELECT {', '.join(COLUMNS)}, processed_at FROM {backend.images_table} "
            f"WHERE {' AND '.join(where)} ORDER BY obs_time, processed_at"
        )


def search_series(backend: IndexBackend, query: SeriesQuery) -> pd.DataFrame:
    """Frames matching ``query``, one row per observation time, sorted by time.

    Returns a DataFrame with :data:`COLUMNS` (``uri`` is a local path or an ``s3://``
    URL; ``obs_time`` is tz-aware UTC; ``exptime_s`` in seconds). When an
    observation was indexed more than once, the most recently processed row wins.
    Nothing is downloaded. An empty result is returned as is: see :func:`require_series`.
    """
    frame = backend.sql(query.to_sql(backend))
    if frame.empty:
        return frame.reindex(columns=list(COLUMNS))
    frame["obs_time"] = pd.to_datetime(frame["obs_time"], utc=True)
    frame = frame.sort_values(["obs_time", "processed_at"], kind="stable")
    frame = frame.drop_duplicates(subset=["obs_time"], keep="last")
    frame["hdu"] = frame["hdu"].fillna(0).astype(int)
    return frame.loc[:, list(COLUMNS)].reset_index(drop=True)


def require_series(backend: IndexBackend, query: SeriesQuery, min_frames: int = 2) -> pd.DataFrame:
    """:func:`search_series`, raising :class:`SeriesNotFound` with the query when too few frames match."""
    frame = search_series(backend, query)
    if len(frame) < min_frames:
        raise SeriesNotFound(
            f"{len(frame)} frame(s) at {query.wavelength_angstrom} A"
            f"{' from ' + query.instrument if query.instrument else ''} between {_utc(query.start).isoformat()} "
            f"and {_utc(query.end).isoformat()} in the images index; need at least {min_frames}. "
            "Check the window and wavelength, and that the files were indexed (status ok/indexed, helioprojective WCS)."
        )
    return frame
