"""Frames named directly (URLs, paths, manifests): a series without prior indexing.

The seed workflow finds its AIA frames with sunpy's Fido through a HelioCloud
CloudCatalog client (``sunpy-cloudcatalog``) and reads them from public S3. Its
results (one row per file, with an S3 ``Key`` and an ``https`` ``URL``) go straight
into a time-lag run::

    from sunpy.net import Fido, attrs as a
    from sunpy_cloudcatalog import Bucket, DataID

    res = Fido.search(a.Time("2011-02-15 00:00", "2011-02-15 12:00"), a.Wavelength(171 * u.AA),
                      Bucket("s3://gov-nasa-hdrl-data1/"), DataID("aia_0171"))
    frames = FrameList(fido_uris(res), storage_options={"anon": True})

or on the command line ``skysift timelag --frames URL|PATH|MANIFEST ... --anon``.

:class:`FrameList` reads each frame's header once (ranged reads, a few in parallel),
builds the same columns as the ``images`` table and answers the same SQL as the
index backends (DuckDB over the in-memory table), so channel selection, the time
window and the instrument filter behave exactly as with an index.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import fsspec
import pandas as pd
import pyarrow as pa
from astropy.io import fits

from skysift.core.metadata import (
    band_name,
    exposure_seconds,
    observation_time,
    survey_name,
    text_keyword,
    wavelength_angstrom,
)
from skysift.errors import SourceNotFound
from skysift.io.storage import FITS_SUFFIXES, is_remote
from skysift.timelag.errors import FrameUnusable, InvalidRequest, RemoteAccessDenied
from skysift.timelag.frames import read_image_header
from skysift.timelag.index import _utc

__all__ = [
    "HEADER_READERS",
    "MANIFEST_SUFFIXES",
    "START_COLUMNS",
    "URI_COLUMNS",
    "WINDOW_MARGIN",
    "FrameList",
    "Window",
    "expand_frames",
    "fido_uris",
    "read_manifest",
    "s3_uri",
]

#: Files given to ``--frames`` that list frames (one per line, or a CSV with a URL column).
MANIFEST_SUFFIXES = (".csv", ".txt", ".lst")
#: CSV columns naming a frame, in order of preference: skysift's ``uri``; sunpy-cloudcatalog's
#: ``Key`` (s3://) and ``URL`` (https); CloudCatalog index files' ``datakey``/``s3key``.
URI_COLUMNS = ("uri", "Key", "key", "datakey", "s3key", "URL", "url", "path")
#: CSV columns giving a frame's start time (CloudCatalog index files; sunpy-cloudcatalog's fetch CSV).
START_COLUMNS = ("start", "Start Time")
#: Manifest rows starting this much outside the requested window are still read (their headers decide).
WINDOW_MARGIN = timedelta(minutes=10)
#: Header reads in flight at once (each is one or two ranged GETs for a remote frame).
HEADER_READERS = 8

Window = tuple[datetime, datetime]

_S3_VIRTUAL_HOST = re.compile(r"^https?://(?P<bucket>[a-z0-9][a-z0-9.-]*?)\.s3(?:[.-][a-z0-9-]+)*\.amazonaws\.com/(?P<key>.+)$")
_S3_PATH_STYLE = re.compile(r"^https?://s3(?:[.-][a-z0-9-]+)*\.amazonaws\.com/(?P<bucket>[^/]+)/(?P<key>.+)$")


def s3_uri(url: str) -> str:
    """``https://BUCKET.s3.amazonaws.com/KEY`` (or path-style) as ``s3://BUCKET/KEY``; other strings unchanged.

    CloudCatalog publishes both forms; the ``s3://`` one is read through s3fs with
    ranged reads, anonymously if asked, and honours ``AWS_ENDPOINT_URL``.
    """
    text = url.strip()
    for pattern in (_S3_VIRTUAL_HOST, _S3_PATH_STYLE):
        match = pattern.match(text)
        if match:
            return f"s3://{match['bucket']}/{match['key']}"
    return text


def _is_manifest(item: str) -> bool:
    name = item.split("?", 1)[0].lower()
    return name.endswith(MANIFEST_SUFFIXES)


def _parse_start(text: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(_clean(text).replace(" ", "T"))
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def read_manifest(uri: str, storage_options: Mapping[str, Any] | None = None, window: Window | None = None) -> list[str]:
    """Frame URIs listed by a manifest: a CSV with a URL column (:data:`URI_COLUMNS`), or one per line.

    The CSV ``Fido.fetch`` writes for sunpy-cloudcatalog results, a CloudCatalog
    yearly index file (``#start,stop,s3key,filesize`` or ``start,stop,datakey,filesize``)
    and a plain list all work. With a ``window`` (UTC start, end), rows of a CSV with a
    start-time column (:data:`START_COLUMNS`) further than :data:`WINDOW_MARGIN` outside
    it are skipped, so a whole year's CloudCatalog index can be given. Blank lines and
    ``#`` comments of plain lists are skipped.
    """
    try:
        with fsspec.open(uri, "rb", **(dict(storage_options or {}) if is_remote(uri) else {})) as handle:
            text = handle.read().decode("utf-8-sig")
    except FileNotFoundError as exc:
        raise SourceNotFound("no such manifest", uri=uri) from exc
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    header = [cell.strip().lstrip("#").strip() for cell in next(csv.reader([lines[0]]))]
    column = next((name for name in URI_COLUMNS if name in header), None)
    if column is None:  # no header: a plain list, or CSV rows (start first) with the frame in some cell
        rows = [row for row in csv.reader(io.StringIO("\n".join(lines))) if not row[0].lstrip().startswith("#")]
        return [uri for row in rows if (uri := _uri_cell(row)) and _in_window(row, 0, window)]
    position = header.index(column)
    start_column = next((header.index(name) for name in START_COLUMNS if name in header), None)
    rows = csv.reader(io.StringIO("\n".join(lines[1:])))
    return [_clean(row[position]) for row in rows
            if len(row) > position and _clean(row[position]) and _in_window(row, start_column, window)]


def _clean(cell: str) -> str:
    return cell.strip().strip("'\"").strip()


def _uri_cell(row: list[str]) -> str:
    """The frame a headerless row names: the whole line, unless it is an index row (a start time first)."""
    if _parse_start(row[0]) is None:
        return ",".join(row).strip()
    cells = [_clean(cell) for cell in row]
    return next((c for c in cells if "://" in c or c.lower().endswith(FITS_SUFFIXES)), "")


def _in_window(row: list[str], start_column: int | None, window: Window | None) -> bool:
    """Whether a manifest row may hold a frame of ``window`` (True when it gives no parsable start)."""
    if window is None or start_column is None or len(row) <= start_column:
        return True
    start = _parse_start(row[start_column])
    return start is None or window[0] - WINDOW_MARGIN <= start <= window[1] + WINDOW_MARGIN


def expand_frames(items: Iterable[str], storage_options: Mapping[str, Any] | None = None,
                  window: Window | None = None) -> list[str]:
    """Frame URIs from URLs, paths and manifests (:func:`read_manifest`), in order, each once; https S3 URLs as ``s3://``."""
    out: list[str] = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        listed = read_manifest(text, storage_options, window) if _is_manifest(text) else [text]
        out.extend(s3_uri(uri) for uri in listed)
    return list(dict.fromkeys(out))


def fido_uris(results: Any) -> list[str]:
    """The frame URIs of Fido search results, or of the files ``Fido.fetch`` returned.

    Accepts a :class:`~sunpy.net.fido_factory.UnifiedResponse` or one client's table
    (any client with a URL-like column, :data:`URI_COLUMNS`), or the paths
    ``Fido.fetch`` returns (frames, or the manifests sunpy-cloudcatalog writes).
    """
    blocks = [results] if hasattr(results, "colnames") else list(results)
    if all(isinstance(item, str | os.PathLike) for item in blocks):
        return expand_frames(os.fspath(item) for item in blocks)
    uris: list[str] = []
    for block in blocks:
        column = next((name for name in URI_COLUMNS if name in block.colnames), None)
        if column is None:
            raise InvalidRequest(f"these Fido results have no frame URL column (columns: {', '.join(block.colnames)})")
        uris.extend(str(value) for value in block[column])
    return expand_frames(uris)


def _row(uri: str, hdu: int, header: fits.Header) -> dict[str, object]:
    ctype = str(header.get("CTYPE1", "")).upper()
    obs_time = observation_time(header)
    if obs_time is None:
        raise FrameUnusable("the header gives no observation time (DATE-OBS)", uri=uri)
    return {
        "image_id": uri,
        "uri": uri,
        "hdu": hdu,
        "obs_time": obs_time,
        "exptime_s": exposure_seconds(header),
        "wavelength_angstrom": wavelength_angstrom(header),
        "telescope": text_keyword(header, "TELESCOP"),
        "instrument": text_keyword(header, "INSTRUME"),
        "nx": int(header.get("NAXIS1", 0)),
        "ny": int(header.get("NAXIS2", 0)),
        "survey": survey_name(header),
        "band": band_name(header),
        "wcs_kind": "helioprojective" if ctype.startswith("HPLN") else "other",
        "status": "indexed",
        "obs_night": obs_time.date().isoformat(),
        "processed_at": datetime.now(UTC),
    }


class FrameList:
    """A series given as frame URIs: headers read once, searched like the ``images`` index.

    Parameters
    ----------
    frames : iterable of str
        Local paths, ``s3://`` or ``https://`` URLs (S3 ones are rewritten to ``s3://``),
        or manifests (:func:`read_manifest`).
    storage_options : mapping, optional
        fsspec options for remote frames, e.g. ``{"anon": True}`` for public buckets.
    window : (datetime, datetime), optional
        The request's time window: manifest rows far outside it are not read (:func:`read_manifest`).

    Raises :class:`InvalidRequest` when no frame is given, :class:`RemoteAccessDenied`
    when remote frames cannot be read with the credentials at hand (saying whether
    ``anon`` would help), and the frame's own typed error (:class:`FrameUnusable`,
    :class:`~skysift.errors.SourceNotFound`) naming the URI when one cannot be read.
    """

    images_table = "frames"

    def __init__(self, frames: Iterable[str], storage_options: Mapping[str, Any] | None = None,
                 window: Window | None = None) -> None:
        self.storage_options: dict[str, Any] = dict(storage_options or {})
        self.uris = expand_frames(frames, self.storage_options, window)
        if not self.uris:
            raise InvalidRequest("no frames given: pass FITS paths or URLs, or a manifest listing them "
                                 "(with frames in the time window)")
        with ThreadPoolExecutor(max_workers=min(HEADER_READERS, len(self.uris))) as pool:
            found = list(pool.map(self._read_header, self.uris))
        #: (uri, hdu) -> essential header, reused by the pipeline instead of reading it again
        self.headers: dict[tuple[str, int], fits.Header] = {}
        rows = []
        for uri, (hdu, header) in zip(self.uris, found, strict=True):
            self.headers[(uri, hdu)] = header
            rows.append(_row(uri, hdu, header))
        self._arrow = pa.Table.from_pylist(rows)
        #: one row per frame, with the ``images`` table's columns (``obs_time`` tz-aware UTC)
        self.table = self._arrow.to_pandas()

    def __len__(self) -> int:
        return len(self.uris)

    def _read_header(self, uri: str) -> tuple[int, fits.Header]:
        try:
            return read_image_header(uri, self.storage_options)
        except PermissionError as exc:  # s3fs: AccessDenied
            hint = ("the bucket does not allow anonymous reads: drop --anon and use credentials"
                    if self.storage_options.get("anon") else
                    "for a public bucket (HelioCloud, AWS Open Data) add --anon (\"anon\": true) to read without credentials")
            raise RemoteAccessDenied(f"access denied ({exc}); {hint}", uri=uri) from exc
        except Exception as exc:
            if type(exc).__name__ in ("NoCredentialsError", "PartialCredentialsError"):  # botocore, via s3fs
                raise RemoteAccessDenied(
                    f"{exc}: public buckets (HelioCloud, AWS Open Data) are read without credentials with --anon "
                    "(\"anon\": true); private ones need AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
                    uri=uri) from exc
            raise

    def sql(self, query: str) -> pd.DataFrame:
        with duckdb.connect() as con:
            con.execute("SET TimeZone = 'UTC'")
            con.register(self.images_table, self._arrow)
            return con.sql(query).to_arrow_table().to_pandas()

    def timestamp_literal(self, when: datetime) -> str:
        return f"TIMESTAMPTZ '{_utc(when).isoformat()}'"

    def header(self, uri: str, hdu: int) -> fits.Header | None:
        """The header read when the list was built (None if ``uri`` is not in it)."""
        return self.headers.get((uri, int(hdu)))
