"""Alert packets: each alert as one record of the versioned Avro schema ``skysift.alert.v1``.

What brokers' users (Fink, Lasair, ALeRCE on ZTF and Rubin alerts) read: the schema
(``schema/skysift.alert.v1.avsc``, shipped in the package; :func:`alert_schema`) holds

* ``candidate``: the source row that raised the alert, with its image's context
  (limiting magnitude, zero point, seeing) and its sky cell;
* ``object``: the object of the candidate as of the alert, the candidate and the earlier
  clean detections associated with it by the rule of the ``objects`` table
  (:func:`skysift.catalog.objects.summarize`: friends of friends within
  ``objects.radius_arcsec``), so its ``object_id`` is the id the objects table gives it;
* ``prv_detections``: the earlier detections of that object, and any other earlier
  detection within the radius (a flagged one: a blend, the edge); ``prv_nondetections``:
  the earlier images that cover the position without such a detection (upper limits);
* ``cutout_science`` and ``cutout_reference``: FITS stamps (as :mod:`~skysift.alerts.cutouts`
  makes them) of the candidate's image and of the earliest earlier image covering it;
* ``crossmatch``: the candidate's and its object's counterparts in the ``matches`` table
  that ``skysift crossmatch`` writes; null where no reference catalog was matched (on AWS
  there is no such table).

"Earlier" is "observed before the candidate", as for the 'new source' rule. A packet is an
Avro object container file holding one record (deflate codec; the schema is in its
header, so no registry is needed), stored beside the cut-outs under a name fixed by the
alert_id (``{home}/packets/{alert_id}.avro``, ``s3://CATALOG/packets/{alert_id}.avro``):
storing it again is harmless, as for the cut-outs. The alert names it (``packet_uri``) and
gains the candidate's ``sky_cell`` (nested HEALPix, nside 64) and ``object_id``, which the
SNS publisher sends as message attributes for subscription filter policies.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import itertools
import json
import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import fastavro
import fastavro.validation
import numpy as np
import pyarrow as pa
from scipy.spatial import cKDTree

from skysift.alerts.cutouts import cutout_fits
from skysift.alerts.rules import _earlier_wcs
from skysift.catalog.arrow import (
    numpy_column,
    numpy_values,
    repeated_string,
    rows_of,
    table_from_rows,
)
from skysift.catalog.history import angular_distance_deg
from skysift.catalog.objects import CELL_ORDER, associate, footprint_cells, summarize
from skysift.catalog.ports import CatalogStore
from skysift.catalog.records import ImageRecord, ImageStatus
from skysift.catalog.schema import TIMESTAMP
from skysift.core import flags as F
from skysift.core.astrometry import HEALPIX_ORDER, WcsStatus, sky_to_pixel
from skysift.errors import SkysiftError

__all__ = [
    "SCHEMA_FILE",
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "alert_schema",
    "attach_packets",
    "build_packets",
    "export_packets",
    "packet_json",
    "read_packet",
    "read_packets",
    "serialize",
    "sky_cell",
    "sky_cell_ranges",
]

log = logging.getLogger(__name__)

SCHEMA_FILE = "skysift.alert.v1.avsc"
SCHEMA_NAME = "skysift.alert.v1.Alert"
#: major.minor; the major version is also in the namespace (``skysift.alert.v1``).
SCHEMA_VERSION = "1.0"
#: Avro codec of the packets (one of the two every Avro implementation must read).
CODEC = "deflate"
#: Nested HEALPix order of ``sky_cell`` (nside 64, ~0.9 deg): that of the objects table's partitions.
SKY_CELL_ORDER = CELL_ORDER
_SKY_CELL_SHIFT = 2 * (HEALPIX_ORDER - SKY_CELL_ORDER)
#: An earlier image covers a position this far inside its edges (as for the 'new source' rule).
COVER_MARGIN_PX = 5.0
#: Earlier detections are read this many association radii around a candidate (at least
#: :data:`MIN_SEARCH_ARCSEC`), so a friends-of-friends chain through them is found whole.
CHAIN_RADII = 10.0
MIN_SEARCH_ARCSEC = 10.0
_MJD_EPOCH = datetime(1858, 11, 17, tzinfo=UTC)

#: Columns of the earlier detections a packet carries (``sources`` columns).
PRV_COLUMNS = ["source_id", "image_id", "obs_time", "ra", "dec", "x", "y", "flux", "flux_err", "mag_ab",
               "mag_ab_err", "snr", "star_score", "flags"]
#: The ``sources`` columns of the candidate (besides the image's context).
CANDIDATE_COLUMNS = ["source_id", "image_id", "obs_time", "ra", "dec", "pos_err_arcsec", "x", "y", "healpix", "flux",
                     "flux_err", "flux_ujy", "flux_ujy_err", "mag_ab", "mag_ab_err", "snr", "fwhm_arcsec",
                     "ellipticity", "star_score", "flags"]
_ASSOCIATED = pa.schema([("source_id", pa.string()), ("image_id", pa.string()), ("obs_time", TIMESTAMP),
                         ("band", pa.string()), ("ra", pa.float64()), ("dec", pa.float64()),
                         ("mag_ab", pa.float32()), ("mag_ab_err", pa.float32()), ("flags", pa.int32())])


# -- the schema and the bytes ----------------------------------------------------------------
def schema_text() -> str:
    """The ``.avsc`` text shipped in the package."""
    return files("skysift.alerts").joinpath("schema", SCHEMA_FILE).read_text(encoding="utf-8")


@functools.cache
def _schema_document() -> dict:
    return json.loads(schema_text())


@functools.cache
def alert_schema() -> dict:
    """The parsed schema (:func:`fastavro.parse_schema`) of ``skysift.alert.v1.Alert``."""
    return fastavro.parse_schema(_schema_document())


def serialize(packet: dict) -> bytes:
    """One packet as an Avro object container file (validated against the schema first).

    The container's sync marker is derived from the alert_id, so the same packet is the
    same bytes whenever it is written.
    """
    # checked without building error messages first: fastavro builds one (a JSON dump) for every
    # union branch a value does not take, most of the cost of writing; the invalid are checked again for theirs
    if not fastavro.validation.validate(packet, alert_schema(), raise_errors=False):
        fastavro.validation.validate(packet, alert_schema(), raise_errors=True)
    buffer = io.BytesIO()
    marker = hashlib.blake2b(packet["alert_id"].encode(), digest_size=16).digest()
    # the schema as in the .avsc (a parsed one's keys come in an order that differs between processes)
    fastavro.writer(buffer, _schema_document(), [packet], codec=CODEC, sync_marker=marker)
    return buffer.getvalue()


def read_packets(source: bytes | str | os.PathLike[str]) -> list[dict]:
    """Every record of an Avro container (bytes, or a local file), with the writer's schema."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    return list(fastavro.reader(io.BytesIO(data)))


def read_packet(source: bytes | str | os.PathLike[str]) -> dict:
    """The one packet of a packet file."""
    records = read_packets(source)
    if len(records) != 1:
        raise ValueError(f"a packet file holds one alert, this one {len(records)}")
    return records[0]


def packet_json(packet: dict) -> dict:
    """A packet as JSON values: stamps base64 (of the FITS bytes), times ISO 8601 (UTC)."""

    def plain(value: Any) -> Any:
        if isinstance(value, bytes):
            return base64.b64encode(value).decode("ascii")
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value

    return plain(packet)


# -- values -----------------------------------------------------------------------------------
def sky_cell(healpix: int | None) -> int | None:
    """The nested HEALPix index at nside 64 of an order-16 ``healpix`` index."""
    return None if healpix is None else int(healpix) >> _SKY_CELL_SHIFT


def sky_cell_ranges(ra_deg: float, dec_deg: float, radius_deg: float) -> list[tuple[int, int]]:
    """The sky cells (nside 64) that a cone touches, as inclusive ranges of consecutive indices:
    the ``sky_cell`` clauses of a filter policy selecting a region
    (``{"numeric": [">=", first, "<=", last]}`` each)."""
    cells = sorted(footprint_cells(ra_deg, dec_deg, radius_deg))
    ranges: list[tuple[int, int]] = []
    for cell in cells:
        if ranges and cell == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], cell)
        else:
            ranges.append((cell, cell))
    return ranges


def _utc(value: Any) -> datetime | None:
    """A time (datetime, pandas Timestamp, ISO string; naive means UTC) as an aware UTC datetime."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        return None
    try:
        value.timestamp()  # pandas' NaT is a datetime that has none
    except (ValueError, OverflowError):
        return None
    value = value.to_pydatetime() if hasattr(value, "to_pydatetime") else value
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _mjd(value: Any) -> float | None:
    when = _utc(value)
    return None if when is None else (when - _MJD_EPOCH).total_seconds() / 86400.0


def _num(value: Any) -> float | None:
    """A finite float, or None (null, NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _unit_vectors(ra_deg, dec_deg) -> np.ndarray:
    ra, dec = np.deg2rad(np.asarray(ra_deg, float)), np.deg2rad(np.asarray(dec_deg, float))
    return np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)]).reshape(-1, 3)


def _chord(arcsec: float) -> float:
    return 2 * math.sin(math.radians(arcsec / 3600.0) / 2)


def _near(ra: np.ndarray, dec: np.ndarray, centres: np.ndarray, arcsec: float) -> np.ndarray:
    """Which positions lie within ``arcsec`` of one of the ``centres`` (unit vectors)."""
    if len(ra) == 0 or len(centres) == 0:
        return np.zeros(len(ra), dtype=bool)
    distance, _ = cKDTree(centres).query(_unit_vectors(ra, dec), distance_upper_bound=_chord(arcsec) * (1 + 1e-9))
    return np.isfinite(distance)


def _finite(value: Any) -> bool:
    return value is not None and math.isfinite(float(value))


# -- what one image's packets read --------------------------------------------------------------
@dataclass
class _Covering:
    """An earlier image that covers a candidate's position, and where."""

    image: ImageRecord
    x: float
    y: float


@dataclass
class _Context:
    """What the packets of one image are built from (each read once for all its alerts)."""

    image: ImageRecord
    sources: pa.Table
    earlier: list[ImageRecord] = field(default_factory=list)  # oldest first
    prior: pa.Table | None = None  # earlier detections near the candidates (PRV_COLUMNS + survey, band)
    matches: dict[str, dict[str, list[dict]] | None] = field(default_factory=dict)  # image_id -> source_id -> rows

    def earlier_image(self, image_id: str) -> ImageRecord | None:
        return next((r for r in self.earlier if r.image_id == image_id), None)


def _read_prior(store: CatalogStore, earlier: list[ImageRecord], image: ImageRecord, centres: np.ndarray,
                search_arcsec: float) -> pa.Table | None:
    """The earlier detections within ``search_arcsec`` of the candidates: found in the
    store's history of the image's cone, then read whole from their images' rows."""
    history = store.earlier_sources(image.center_ra, image.center_dec, float(image.radius_deg or 0.0) + 0.01,
                                    image.obs_time)
    if history.num_rows == 0:
        return None
    near = _near(numpy_values(history["ra"]), numpy_values(history["dec"]),
                 centres, search_arcsec)
    wanted = set(history["image_id"].filter(numpy_column(near, pa.bool_())).to_pylist())
    parts = []
    for row in earlier:
        if row.image_id not in wanted:
            continue
        try:
            table = store.read_sources(row)
        except (OSError, SkysiftError) as exc:  # re-run or removed since: its detections are left out
            log.warning("packets: the sources of earlier image %s could not be read (%s)", row.image_id, exc)
            continue
        table = table.select([c for c in PRV_COLUMNS if c in table.column_names])
        ra, dec = numpy_values(table["ra"]), numpy_values(table["dec"])
        table = table.filter(numpy_column(np.isfinite(ra) & np.isfinite(dec) & _near(np.nan_to_num(ra), np.nan_to_num(dec),
                                                                                      centres, search_arcsec), pa.bool_()))
        if table.num_rows:
            for name in ("survey", "band"):
                table = table.append_column(name, repeated_string(getattr(row, name), table.num_rows))
            parts.append(table)
    return pa.concat_tables(parts, promote_options="permissive") if parts else None


def _context(image: ImageRecord, sources: pa.Table, store: CatalogStore, candidates: list[dict],
             radius_arcsec: float) -> _Context:
    context = _Context(image, sources)
    placed = [c for c in candidates if _finite(c.get("ra")) and _finite(c.get("dec"))]
    if not placed or image.obs_time is None or not _finite(image.center_ra):
        return context
    context.earlier = store.earlier_images(image.center_ra, image.center_dec, float(image.radius_deg or 0.0),
                                           image.obs_time)
    if context.earlier:
        centres = _unit_vectors([c["ra"] for c in placed], [c["dec"] for c in placed])
        context.prior = _read_prior(store, context.earlier, image, centres, _search_arcsec(radius_arcsec))
    return context


def _search_arcsec(radius_arcsec: float) -> float:
    return max(MIN_SEARCH_ARCSEC, CHAIN_RADII * radius_arcsec)


# -- one packet's parts ------------------------------------------------------------------------
def _candidate(source: dict, image: ImageRecord) -> dict:
    healpix = _int(source.get("healpix"))
    return {
        "source_id": str(source["source_id"]), "image_id": str(image.image_id),
        "image_uri": _str(image.uri), "survey": _str(image.survey),
        "band": _str(image.band), "obs_night": _str(image.obs_night),
        "obs_time": _utc(source.get("obs_time") or image.obs_time),
        "mjd": _mjd(source.get("obs_time") or image.obs_time),
        "ra": _num(source.get("ra")), "dec": _num(source.get("dec")), "pos_err_arcsec": _num(source.get("pos_err_arcsec")),
        "x": float(source["x"]), "y": float(source["y"]), "healpix": healpix, "sky_cell": sky_cell(healpix),
        **{k: _num(source.get(k)) for k in ("flux", "flux_err", "flux_ujy", "flux_ujy_err", "mag_ab", "mag_ab_err",
                                            "snr", "fwhm_arcsec", "ellipticity", "star_score")},
        "flags": int(source.get("flags") or 0),
        **{k: _num(getattr(image, k)) for k in ("limit_mag_5sigma", "zero_point_ab", "seeing_fwhm_arcsec", "exptime_s")},
    }


def _associated(rows: Iterable[dict]) -> pa.Table:
    return table_from_rows(list(rows), _ASSOCIATED)


def _objects_of(sets: list[list[dict]], radius_arcsec: float) -> list[dict]:
    """The object of the first detection (the candidate) of each set of clean detections
    (the candidate, then the earlier and same-image ones around it), as
    :func:`skysift.catalog.objects.summarize` makes it from that set alone.

    One ``summarize`` over every set (its friends-of-friends groups made set by set and
    kept apart) instead of one per alert: its cost is per call, not per detection."""
    if not sets:
        return []
    detections = _associated(r for rows in sets for r in rows)
    ra = numpy_values(detections["ra"]).astype(np.float64)
    dec = numpy_values(detections["dec"]).astype(np.float64)
    starts = np.cumsum([0] + [len(rows) for rows in sets])
    groups, offset = np.empty(len(ra), np.int64), 0
    for start, stop in itertools.pairwise(starts):
        labels = associate(ra[start:stop], dec[start:stop], radius_arcsec)
        groups[start:stop] = labels + offset
        offset += int(labels.max()) + 1
    objects, member_of = summarize(detections, radius_arcsec, groups=groups)
    rows = rows_of(objects.take(numpy_column(member_of[starts[:-1]], pa.int64())))
    return [{
        "object_id": row["object_id"], "ra": float(row["ra"]), "dec": float(row["dec"]),
        "pos_scatter_arcsec": _num(row["pos_scatter_arcsec"]), "n_det": int(row["n_det"]),
        "n_images": int(row["n_images"]), "n_bands": int(row["n_bands"]),
        "first_seen": _utc(row["first_seen"]), "last_seen": _utc(row["last_seen"]),
        "first_source_id": row["first_source_id"], "flags_any": int(row["flags_any"] or 0),
        "radius_arcsec": float(row["radius_arcsec"]), "healpix": int(row["healpix"]),
        "photometry": [{k: (_num(v) if k.startswith("mag") else v) for k, v in band.items()}
                       for band in row["photometry"]],
        "source_ids": list(row["source_ids"]),
    } for row in rows]


def _prv_detection(row: dict, separation_arcsec: float, in_object: bool) -> dict:
    return {
        "source_id": str(row["source_id"]), "image_id": str(row["image_id"]), "survey": _str(row.get("survey")),
        "band": _str(row.get("band")), "obs_time": _utc(row.get("obs_time")), "mjd": _mjd(row.get("obs_time")),
        "ra": float(row["ra"]), "dec": float(row["dec"]), "x": _num(row.get("x")), "y": _num(row.get("y")),
        **{k: _num(row.get(k)) for k in ("flux", "flux_err", "mag_ab", "mag_ab_err", "snr", "star_score")},
        "flags": int(row.get("flags") or 0), "separation_arcsec": float(separation_arcsec), "in_object": in_object,
    }


def _coverings(earlier: list[ImageRecord], ra: np.ndarray, dec: np.ndarray) -> list[list[_Covering]]:
    """For each position, the earlier images (oldest first) whose pixels hold it at least
    :data:`COVER_MARGIN_PX` inside their edges (each image's WCS asked once for all positions)."""
    found: list[list[_Covering]] = [[] for _ in range(len(ra))]
    placed = np.flatnonzero(np.isfinite(ra) & np.isfinite(dec))
    if placed.size == 0:
        return found
    for row in earlier:
        wcs = _earlier_wcs(row)
        if wcs is None or not row.nx or not row.ny:
            continue
        x, y = (np.atleast_1d(np.asarray(v, float)) for v in sky_to_pixel(wcs, ra[placed], dec[placed]))
        margin = COVER_MARGIN_PX
        with np.errstate(invalid="ignore"):
            inside = (x >= margin) & (y >= margin) & (x <= row.nx - 1 - margin) & (y <= row.ny - 1 - margin)
        for k in np.flatnonzero(inside):
            found[placed[k]].append(_Covering(row, float(x[k]), float(y[k])))
    return found


def _nondetection(cover: _Covering) -> dict:
    image = cover.image
    return {"image_id": str(image.image_id), "survey": _str(image.survey), "band": _str(image.band),
            "obs_time": _utc(image.obs_time), "mjd": _mjd(image.obs_time), "x": cover.x, "y": cover.y,
            "limit_mag_5sigma": _num(image.limit_mag_5sigma), "limit_flux_5sigma": _num(image.limit_flux_5sigma)}


def _cutout(image: ImageRecord, x: float, y: float, size_px: int, name: str, data: bytes) -> dict:
    return {"image_id": str(image.image_id), "obs_time": _utc(image.obs_time), "band": _str(image.band),
            "x": float(x), "y": float(y), "size_px": int(size_px), "file_name": name, "stamp_data": data}


def _reference_stamps(alerts: list[dict], coverings: list[list[_Covering]], size_px: int) -> list[dict | None]:
    """Per alert, the stamp of the earliest earlier image covering it that can be read (one
    read per image for all the alerts it serves; an unreadable image yields to the next)."""
    stamps: list[dict | None] = [None] * len(alerts)
    unreadable: set[str] = set()
    pending = [i for i, options in enumerate(coverings) if options]
    while pending:
        groups: dict[str, list[tuple[int, _Covering]]] = {}
        for i in pending:
            option = next((c for c in coverings[i] if c.image.image_id not in unreadable), None)
            if option is not None:
                groups.setdefault(option.image.image_id, []).append((i, option))
        if not groups:
            break
        pending = []
        for image_id, members in groups.items():
            row = members[0][1].image
            wanted = [{"x": c.x, "y": c.y, "alert_id": alerts[i]["alert_id"], "rule": alerts[i]["rule"]} for i, c in members]
            try:
                data = cutout_fits(row.uri, row.hdu, wanted, size_px, with_wcs=row.wcs_status is not WcsStatus.INVALID)
            except (OSError, SkysiftError) as exc:  # moved, deleted or damaged since it was measured
                log.warning("packets: no reference stamp from earlier image %s: %s", row.uri, exc)
                unreadable.add(image_id)
                pending += [i for i, _ in members]
                continue
            for (i, cover), stamp in zip(members, data, strict=True):
                stamps[i] = _cutout(row, cover.x, cover.y, size_px, f"{alerts[i]['alert_id']}.reference.fits", stamp)
    return stamps


def _crossmatch(context: _Context, store: CatalogStore, candidate: dict, members: set[str]) -> list[dict] | None:
    """Counterparts of the candidate and its object's detections in the ``matches`` table;
    None when the store has no such table."""
    reader = getattr(store, "read_matches", None)
    if reader is None:
        return None
    image_ids = {candidate["image_id"], *(s.split(":", 1)[0] for s in members)}
    found: list[dict] = []
    exists = False
    for image_id in sorted(image_ids):
        if image_id not in context.matches:
            row = context.image if image_id == context.image.image_id else context.earlier_image(image_id)
            table = reader(row) if row is not None else None
            by_source: dict[str, list[dict]] | None = None
            if table is not None:
                by_source = {}
                for match in rows_of(table):
                    by_source.setdefault(match["source_id"], []).append(match)
            context.matches[image_id] = by_source
        by_source = context.matches[image_id]
        if by_source is None:
            continue
        exists = True
        found += [m for s in members | {candidate["source_id"]} for m in by_source.get(s, [])]
    if not exists:
        return None
    out: dict[tuple[str, str | None], dict] = {}
    for match in found:
        separation = float(angular_distance_deg(candidate["ra"], candidate["dec"], match["ref_ra"], match["ref_dec"])) * 3600
        record = {"reference": str(match.get("reference") or "reference"), "ref_id": _str(match.get("ref_id")),
                  "ref_ra": float(match["ref_ra"]), "ref_dec": float(match["ref_dec"]),
                  "ref_mag": _num(match.get("ref_mag")), "separation_arcsec": separation,
                  "matched_source_id": str(match["source_id"]), "match_sep_arcsec": _num(match.get("sep_arcsec")),
                  "n_candidates": _int(match.get("n_candidates"))}
        key = (record["reference"], record["ref_id"] or f"{record['ref_ra']:.7f},{record['ref_dec']:.7f}")
        if key not in out or separation < out[key]["separation_arcsec"]:
            out[key] = record
    return sorted(out.values(), key=lambda r: r["separation_arcsec"])


# -- packets ----------------------------------------------------------------------------------
def build_packets(image: ImageRecord, alerts: list[dict], sources: pa.Table, store: CatalogStore,
                  science_cutouts: list[bytes | None], *, cutout_size_px: int = 32,
                  radius_arcsec: float = 1.0) -> list[dict]:
    """The packet of each alert of one image (records of :func:`alert_schema`), nothing stored.

    ``sources`` are the image's ``sources`` rows (the candidates are among them),
    ``science_cutouts`` the FITS stamp of each alert (None: none), ``radius_arcsec`` the
    association radius of the objects table (setting ``objects.radius_arcsec``).
    """
    if not alerts:
        return []
    from skysift import __version__

    index = {s: i for i, s in enumerate(sources["source_id"].to_pylist())}
    columns = [c for c in CANDIDATE_COLUMNS if c in sources.column_names]
    rows = rows_of(sources.select(columns).take(numpy_column([index[a["source_id"]] for a in alerts], pa.int64())))
    context = _context(image, sources, store, rows, radius_arcsec)
    search = _search_arcsec(radius_arcsec)
    prior = rows_of(context.prior) if context.prior is not None else []
    prior_ra = np.array([r["ra"] for r in prior], float)
    prior_dec = np.array([r["dec"] for r in prior], float)
    here = sources.select([c for c in ("source_id", "image_id", "ra", "dec", "mag_ab", "mag_ab_err", "flags", "obs_time")
                           if c in sources.column_names])
    here_ra = numpy_values(here["ra"]).astype(float)
    here_dec = numpy_values(here["dec"]).astype(float)
    here_clean = (numpy_values(here["flags"]) & F.CLEAN_MASK) == 0
    band = image.band

    def coordinate(row: dict, name: str) -> float:
        value = _num(row.get(name))
        return np.nan if value is None else value

    all_coverings = _coverings(context.earlier, np.array([coordinate(r, "ra") for r in rows], float),
                               np.array([coordinate(r, "dec") for r in rows], float))
    # the detections around each placed candidate, then every candidate's object at once
    here_rows = rows_of(here)
    candidates = [_candidate(source, image) for source in rows]
    placed = [i for i, c in enumerate(candidates) if c["ra"] is not None and c["dec"] is not None]
    locals_, sets = {}, []
    for i in placed:
        ra, dec = candidates[i]["ra"], candidates[i]["dec"]
        separation = angular_distance_deg(prior_ra, prior_dec, ra, dec) * 3600 if prior else np.zeros(0)
        locals_[i] = [(r, s) for r, s in zip(prior, separation, strict=True) if s <= search]
        clean_prior = [r for r, _ in locals_[i] if (int(r.get("flags") or 0) & F.CLEAN_MASK) == 0]
        with np.errstate(invalid="ignore"):
            close = here_clean & np.isfinite(here_ra) & (
                angular_distance_deg(np.nan_to_num(here_ra), np.nan_to_num(here_dec), ra, dec) * 3600 <= search)
        current = [here_rows[k] | {"band": band} for k in np.flatnonzero(close)]
        source = rows[i]
        candidate = source | {"band": band, "obs_time": source.get("obs_time") or image.obs_time}
        sets.append([candidate, *(r for r in clean_prior + current if r["source_id"] != candidate["source_id"])])
    objects = dict(zip(placed, _objects_of(sets, radius_arcsec), strict=True))
    parts = []
    for i, (alert, candidate, coverings) in enumerate(zip(alerts, candidates, all_coverings, strict=True)):
        obj, prv, nondetections, members = objects.get(i), [], [], set()
        if obj is not None:
            members = set(obj["source_ids"])
            prv = sorted((_prv_detection(r, s, r["source_id"] in members) for r, s in locals_[i]
                          if r["source_id"] in members or s <= radius_arcsec),
                         key=lambda d: (d["obs_time"] is None, d["obs_time"] or datetime.min.replace(tzinfo=UTC),
                                        d["source_id"]))
            seen_in = {d["image_id"] for d in prv}
            nondetections = [_nondetection(c) for c in coverings if c.image.image_id not in seen_in]
        parts.append((alert, candidate, obj, prv, nondetections, coverings, members))

    references = _reference_stamps(alerts, [p[5] for p in parts], cutout_size_px)
    packets = []
    for (alert, candidate, obj, prv, nondetections, _, members), science, reference in zip(
            parts, science_cutouts, references, strict=True):
        crossmatch = _crossmatch(context, store, candidate, members) if candidate["ra"] is not None else None
        packets.append({
            "schema_version": SCHEMA_VERSION, "alert_id": str(alert["alert_id"]), "rule": str(alert["rule"]),
            "detail": _str(alert.get("detail")),
            "created_at": _utc(alert.get("created_at")) or datetime.now(UTC),
            "producer": f"skysift {__version__}",
            "candidate": candidate, "object": obj, "prv_detections": prv, "prv_nondetections": nondetections,
            "cutout_science": None if science is None else _cutout(
                image, float(alert["x"]), float(alert["y"]), cutout_size_px, f"{alert['alert_id']}.fits", science),
            "cutout_reference": reference, "crossmatch": crossmatch,
        })
    return packets


def attach_packets(image: ImageRecord, alerts: list[dict], sources: pa.Table, store: CatalogStore,
                   science_cutouts: list[bytes | None], *, cutout_size_px: int = 32,
                   radius_arcsec: float = 1.0) -> list[dict]:
    """Build and store each alert's packet; the alerts with ``packet_uri``, ``object_id`` and
    ``sky_cell`` added (what the SNS message and its attributes carry)."""
    packets = build_packets(image, alerts, sources, store, science_cutouts, cutout_size_px=cutout_size_px,
                            radius_arcsec=radius_arcsec)
    return [{**alert, "object_id": packet["object"]["object_id"] if packet["object"] else None,
             "sky_cell": packet["candidate"]["sky_cell"],
             "packet_uri": store.put_packet(alert["alert_id"], serialize(packet))}
            for alert, packet in zip(alerts, packets, strict=True)]


# -- export -----------------------------------------------------------------------------------
@dataclass
class ExportReport:
    """What :func:`export_packets` wrote."""

    written: list[str] = field(default_factory=list)  # the files
    built: int = 0  # packets built from the tables (none stored, or ``rebuild``)
    missing: list[tuple[str, str]] = field(default_factory=list)  # (alert_id, why no packet)


def export_packets(home: str | os.PathLike[str], out_dir: str | os.PathLike[str], fmt: str = "avro", *,
                   rebuild: bool = False, rule: str | None = None, cutout_size_px: int = 32,
                   radius_arcsec: float = 1.0) -> ExportReport:
    """Write the packet of every alert sent from ``home`` (its alert log) into ``out_dir``, one
    file per alert: ``{alert_id}.avro`` (the packet as stored), or ``{alert_id}.json``
    (:func:`packet_json`).

    An alert without a stored packet (raised before packets existed), or every alert with
    ``rebuild``, gets one built now from the tables, its stored cut-out and the earlier
    images (as of its observation time; the ``matches`` of a later ``skysift crossmatch``
    included); nothing in the home is changed. Alerts whose image or source is no longer in
    the tables are listed in ``missing``.
    """
    from skysift.alerts.log import LogPublisher
    from skysift.catalog.tables import LocalTables

    if fmt not in ("avro", "json"):
        raise ValueError(f"format {fmt!r}: avro or json")
    store = LocalTables(home)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = ExportReport()
    alerts = [a for a in LogPublisher(home).read() if rule is None or a.get("rule") == rule]
    ready: list[tuple[str, bytes | None, dict | None]] = []
    to_build: dict[str, list[dict]] = {}
    for alert in alerts:
        path = store.packet_path(alert["alert_id"])
        if not rebuild and path.exists():
            ready.append((alert["alert_id"], path.read_bytes(), None))
        else:
            to_build.setdefault(alert["image_id"], []).append(alert)
    if to_build:
        rows = {r.image_id: r for r in store.images() if r.status is ImageStatus.OK}
        for image_id, wanted in to_build.items():
            built = _rebuild(store, rows.get(image_id), wanted, report, cutout_size_px, radius_arcsec)
            ready += [(p["alert_id"], None, p) for p in built]
    for alert_id, data, packet in ready:
        if fmt == "avro":
            target = out / f"{alert_id}.avro"
            target.write_bytes(data if data is not None else serialize(packet))
        else:
            target = out / f"{alert_id}.json"
            target.write_text(json.dumps(packet_json(packet if packet is not None else read_packet(data)), indent=1) + "\n")
        report.written.append(str(target))
    return report


def _rebuild(store, row: ImageRecord | None, alerts: list[dict], report: ExportReport, cutout_size_px: int,
             radius_arcsec: float) -> list[dict]:
    """The packets of one image's logged alerts, built from the tables now."""
    if row is None:
        report.missing += [(a["alert_id"], "its image is no longer in the tables") for a in alerts]
        return []
    try:
        sources = store.read_sources(row)
    except FileNotFoundError:
        report.missing += [(a["alert_id"], "its image's sources are no longer in the tables") for a in alerts]
        return []
    known = set(sources["source_id"].to_pylist())
    report.missing += [(a["alert_id"], "its source is no longer in the tables") for a in alerts if a["source_id"] not in known]
    alerts = [a for a in alerts if a["source_id"] in known]
    cutouts: list[bytes | None] = []
    for alert in alerts:
        stored = store.cutouts / f"{alert['alert_id']}.fits"
        if stored.exists():
            cutouts.append(stored.read_bytes())
            continue
        try:
            cutouts += cutout_fits(row.uri, row.hdu, [alert], cutout_size_px,
                                   with_wcs=row.wcs_status is not WcsStatus.INVALID)
        except (OSError, SkysiftError) as exc:
            log.warning("packets: no science stamp for alert %s: %s", alert["alert_id"], exc)
            cutouts.append(None)
    packets = build_packets(row, alerts, sources, store, cutouts, cutout_size_px=cutout_size_px,
                            radius_arcsec=radius_arcsec)
    report.built += len(packets)
    return packets
