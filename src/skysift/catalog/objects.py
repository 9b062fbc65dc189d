"""Objects: the detections of one source across images and epochs, associated on the sky.

Two clean detections (no flag of :data:`skysift.core.flags.CLEAN_MASK` set, with a sky
position) belong to the same object when they lie within ``radius_arcsec`` of each
other (the setting ``objects.radius_arcsec``, default 1 arcsec), directly or through
other detections of the object (friends-of-friends linking), whatever their image,
band or night. Linking depends only on the set of detections, never on the order
images were processed in, so objects recomputed from the ``sources`` table are
idempotent by construction: running an image again, or a run twice, changes nothing,
and a new image changes only the objects it touches. The ``sources`` rows are never
modified; the link is the ``source_ids`` list of each object (the ``detections`` view
of :class:`skysift.catalog.query.LocalCatalog` unnests it).

Layout: ``{home}/tables/objects/sky_cell=C/objects.parquet``, one file per nested
HEALPix cell of order :data:`CELL_ORDER` (~0.9 deg) holding the objects whose mean
position lies in it, each file written atomically. :func:`update_objects` (the end of
``skysift run``) recomputes the cells that a run's images cover from every clean
detection in them and their neighbouring cells, so an object across a cell edge is
whole, adding a cell when an object touched belongs to one not yet included, now or as
stored (an object whose mean position moved leaves its old cell's file).
:func:`rebuild_objects` (``skysift objects --rebuild``) recomputes every cell, in
batches, and removes cells left without objects.

``object_id`` is a hash of the object's earliest detection (earliest ``obs_time``,
then ``source_id``): it stays the same as later detections join. An image observed
before every detection of an object but processed after them gives that object a new
id, as does the merging of two objects (the earlier one's id survives).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from astropy import units as u
from astropy_healpix import HEALPix
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from skysift.catalog import integrity
from skysift.catalog.arrow import (
    empty_table,
    numpy_column,
    numpy_values,
    python_column,
    read_parquet,
    repeated_string,
    string_codes,
    write_parquet,
)
from skysift.catalog.schema import TIMESTAMP, _field, sources_schema
from skysift.catalog.tables import again_if_replaced, partition_of
from skysift.core.astrometry import HEALPIX_ORDER, healpix_index
from skysift.core.flags import CLEAN_MASK

__all__ = [
    "CELL_ORDER",
    "FILE_NAME",
    "OBJECTS_PARTITIONS",
    "OBJECTS_SCHEMA",
    "PHOTOMETRY_TYPE",
    "REBUILD_BATCH_CELLS",
    "ObjectsReport",
    "associate",
    "catalog_count",
    "footprint_cells",
    "neighbours",
    "objects_root",
    "rebuild_objects",
    "stored_radius",
    "summarize",
    "update_objects",
]

if TYPE_CHECKING:
    from skysift.catalog.query import LocalCatalog

log = logging.getLogger(__name__)

#: Nested HEALPix order of the ``sky_cell`` partitions (nside 64, cells of ~0.92 deg).
CELL_ORDER = 6
_CELL_SHIFT = 2 * (HEALPIX_ORDER - CELL_ORDER)
_CELLS = HEALPix(nside=2**CELL_ORDER, order="nested")
#: Cells recomputed together by :func:`rebuild_objects` when it queries the sources through
#: DuckDB (bounds the detections held in memory); a table read whole is one batch.
REBUILD_BATCH_CELLS = 64
FILE_NAME = "objects.parquet"
#: Threads writing the cells' files (Parquet's writer compresses without the GIL: the cells of
#: a first run over 64 images are written in half the time on two cores).
WRITER_THREADS = 4


PHOTOMETRY_TYPE = pa.struct([
    _field("band", pa.string(), "", "band (the sources' partition key)"),
    _field("n_det", pa.int32(), "", "detections in this band"),
    _field("n_mag", pa.int32(), "", "of which with an AB magnitude (a zero point)"),
    _field("mag_mean", pa.float64(), "mag", "mean AB magnitude (sources.mag_ab)"),
    _field("mag_std", pa.float64(), "mag", "sample standard deviation of mag_ab; null for fewer than 2"),
    _field("mag_err_mean", pa.float64(), "mag", "mean of the detections' mag_ab_err"),
    _field("mag_min", pa.float64(), "mag", "brightest mag_ab"),
    _field("mag_max", pa.float64(), "mag", "faintest mag_ab"),
])

OBJECTS_SCHEMA = pa.schema(
    [
        _field("object_id", pa.string(), "", "hash of first_source_id: stable as later detections join", False),
        _field("ra", pa.float64(), "deg", "mean right ascension of the detections, ICRS"),
        _field("dec", pa.float64(), "deg", "mean declination of the detections, ICRS"),
        _field("pos_scatter_arcsec", pa.float64(), "arcsec", "rms distance of the detections from (ra, dec)"),
        _field("n_det", pa.int32(), "", "clean detections associated, all bands"),
        _field("n_images", pa.int32(), "", "images with at least one of them"),
        _field("n_bands", pa.int32(), "", "bands with at least one of them"),
        _field("first_seen", TIMESTAMP, "UTC", "obs_time of the earliest detection"),
        _field("last_seen", TIMESTAMP, "UTC", "obs_time of the latest detection"),
        _field("first_source_id", pa.string(), "", "the earliest detection (obs_time, then source_id)"),
        _field("flags_any", pa.int32(), "", "bitwise OR of the detections' flags (skysift.core.flags): 1 = some "
               "detection came out of a blend"),
        _field("photometry", pa.list_(pa.field("item", PHOTOMETRY_TYPE)), "",
               "per band, by band name: band, n_det, n_mag, mag_mean, mag_std, mag_err_mean, mag_min, mag_max "
               "(magnitudes AB, mag)"),
        _field("source_ids", pa.list_(pa.string()), "", "sources.source_id of every detection, earliest first"),
        _field("radius_arcsec", pa.float64(), "arcsec", "association radius used"),
        _field("healpix", pa.int64(), "", "nested HEALPix index of (ra, dec) at order 16 (nside 65536)"),
    ],
    metadata={"table": "objects", "partition_keys": "sky_cell"},
)
#: Partition key of the objects table: the nested HEALPix cell (order :data:`CELL_ORDER`) of (ra, dec).
OBJECTS_PARTITIONS = {"sky_cell": pa.int64()}


@dataclass
class ObjectsReport:
    """What an update or rebuild of the objects table did."""

    cells: int = 0  # sky cells rewritten (or removed)
    objects: int = 0  # objects in those cells
    detections: int = 0  # clean detections read to compute them
    rebuilt: bool = False


def objects_root(home: str | os.PathLike[str]) -> Path:
    return Path(home) / "tables" / "objects"


# -- association -------------------------------------------------------------------------------
def _unit_vectors(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    ra, dec = np.deg2rad(ra_deg), np.deg2rad(dec_deg)
    return np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])


def associate(ra_deg: np.ndarray, dec_deg: np.ndarray, radius_arcsec: float) -> np.ndarray:
    """Friends-of-friends groups: a label per position, equal for positions linked by
    steps of at most ``radius_arcsec``. Labels follow the input order (the first
    position's group is 0), so the same input gives the same labels."""
    n = len(ra_deg)
    if n == 0:
        return np.zeros(0, np.int64)
    chord = 2 * np.sin(np.deg2rad(radius_arcsec / 3600.0) / 2)
    pairs = cKDTree(_unit_vectors(ra_deg, dec_deg)).query_pairs(chord, output_type="ndarray")
    if n <= SMALL_GROUPING:
        return _components(n, pairs)
    graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1].astype(np.int64)


#: Up to this many positions, :func:`associate` labels the groups itself (scipy's sparse graph
#: costs ~0.15 ms a call: most of the time of a packet's object, a handful of detections).
SMALL_GROUPING = 256


def _components(n: int, pairs: np.ndarray) -> np.ndarray:
    """Connected components of ``n`` nodes linked by ``pairs``, labelled as scipy's
    ``connected_components`` labels them: in the order of each component's first node."""
    lowest = np.arange(n)
    if len(pairs):
        i, j = pairs[:, 0], pairs[:, 1]
        while True:  # every node takes the lowest node index it is linked to, until none changes
            before = lowest.copy()
            np.minimum.at(lowest, i, lowest[j])
            np.minimum.at(lowest, j, lowest[i])
            lowest = lowest[lowest]
            if np.array_equal(lowest, before):
                break
    return np.unique(lowest, return_inverse=True)[1].astype(np.int64)


def _object_id(first_source_id: str) -> str:
    return hashlib.blake2b(first_source_id.encode(), digest_size=8).hexdigest()


def _group_starts(keys: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, np.int64)


def summarize(detections: pa.Table, radius_arcsec: float, *,
              groups: np.ndarray | None = None) -> tuple[pa.Table, np.ndarray]:
    """The objects of ``detections`` (``source_id``, ``image_id``, ``obs_time``, ``band``,
    ``ra``, ``dec``, ``mag_ab``, ``mag_ab_err``, ``flags``), and for each detection its object's row.

    Deterministic: the same detections, in any order, give the same table.

    ``groups`` (an integer per detection, in input order): the objects are these groups
    instead of the friends-of-friends groups at ``radius_arcsec``. Each object's row
    depends only on its own detections, so many independent sets (each grouped by
    :func:`associate`, their labels kept apart) are summarized in one call with the rows
    each set alone would give: what an image's alert packets do, one set per alert.
    """
    by_id = numpy_values(pc.sort_indices(detections, [("source_id", "ascending")]))
    detections = detections.take(numpy_column(by_id, pa.uint64()))
    n = detections.num_rows
    ra = numpy_values(detections["ra"]).astype(np.float64)
    dec = numpy_values(detections["dec"]).astype(np.float64)
    flags = numpy_values(detections["flags"], null=0).astype(np.int32)
    labels = associate(ra, dec, radius_arcsec) if groups is None else np.asarray(groups, np.int64)[by_id]
    times = numpy_values(detections["obs_time"].cast(pa.int64()), null=np.iinfo(np.int64).max)
    order = np.lexsort((np.arange(n), times, labels))  # by object, earliest first, then source_id
    labels, times = labels[order], times[order]
    starts = _group_starts(labels)
    counts = np.diff(np.r_[starts, n])
    n_objects = len(starts)
    member_object = np.repeat(np.arange(n_objects), counts)

    xyz = _unit_vectors(ra[order], dec[order])
    mean = np.add.reduceat(xyz, starts, axis=0) if n else np.zeros((0, 3))
    mean /= np.linalg.norm(mean, axis=1, keepdims=True)
    obj_ra = np.rad2deg(np.arctan2(mean[:, 1], mean[:, 0])) % 360.0
    obj_dec = np.rad2deg(np.arcsin(np.clip(mean[:, 2], -1, 1)))
    chord = np.linalg.norm(xyz - mean[member_object], axis=1)
    separation = np.rad2deg(2 * np.arcsin(np.clip(chord / 2, 0, 1))) * 3600.0
    scatter = np.sqrt(np.add.reduceat(separation**2, starts) / counts) if n else np.zeros(0)

    missing = np.iinfo(np.int64).max
    first = np.minimum.reduceat(times, starts) if n else np.zeros(0, np.int64)
    known = np.where(times == missing, np.iinfo(np.int64).min, times)
    last = np.maximum.reduceat(known, starts) if n else np.zeros(0, np.int64)
    first_seen = numpy_column(first, pa.int64(), mask=first == missing).cast(TIMESTAMP)
    last_seen = numpy_column(last, pa.int64(), mask=last == np.iinfo(np.int64).min).cast(TIMESTAMP)

    source_ids = detections["source_id"].take(numpy_column(order, pa.int64())).combine_chunks()
    first_source_ids = source_ids.take(numpy_column(starts, pa.int64()))
    first_ids = first_source_ids.to_pylist()
    image_codes = string_codes(detections["image_id"], null="")[1][order]
    pairs = np.unique(member_object * (image_codes.max(initial=0) + 1) + image_codes)
    n_images = np.bincount(pairs // (image_codes.max(initial=0) + 1), minlength=n_objects)

    photometry, n_bands = _photometry(detections, order, member_object, n_objects)
    offsets = numpy_column(np.r_[0, np.cumsum(counts)], pa.int32())
    healpix = healpix_index(obj_ra, obj_dec) if n_objects else np.zeros(0, np.int64)
    columns = {
        "object_id": python_column([_object_id(s) for s in first_ids], pa.string()),
        "ra": obj_ra, "dec": obj_dec, "pos_scatter_arcsec": scatter,
        "n_det": counts.astype(np.int32), "n_images": n_images.astype(np.int32), "n_bands": n_bands,
        "first_seen": first_seen, "last_seen": last_seen,
        "first_source_id": first_source_ids,
        "flags_any": np.bitwise_or.reduceat(flags[order], starts) if n else np.zeros(0, np.int32),
        "photometry": photometry,
        "source_ids": pa.ListArray.from_arrays(offsets, source_ids),
        "radius_arcsec": np.full(n_objects, float(radius_arcsec)),
        "healpix": healpix.astype(np.int64),
    }
    table = pa.Table.from_arrays(
        [value if isinstance(value, pa.Array) else numpy_column(value, field.type, nan_is_null=False)
         for field, value in ((OBJECTS_SCHEMA.field(name), value) for name, value in columns.items())],
        names=list(columns)).cast(OBJECTS_SCHEMA)
    member_of = np.empty(n, np.int64)
    member_of[by_id[order]] = member_object  # back to the order of the input
    return table, member_of


def _photometry(detections: pa.Table, order: np.ndarray, member_object: np.ndarray,
                n_objects: int) -> tuple[pa.Array, np.ndarray]:
    """Per object, per band: counts and magnitude statistics (a list of structs), and bands per object."""
    names, band_codes = string_codes(detections["band"], null="unknown")
    band_codes = band_codes[order]
    mag = numpy_values(detections["mag_ab"].cast(pa.float64()))[order]
    err = numpy_values(detections["mag_ab_err"].cast(pa.float64()))[order]
    by = np.lexsort((band_codes, member_object))  # stable: within a band, earliest first
    key = member_object[by] * max(1, len(names)) + band_codes[by]
    starts = _group_starts(key)
    n = len(key)
    counts = np.diff(np.r_[starts, n])
    mag, err = mag[by], err[by]
    valid = np.isfinite(mag)

    def total(values: np.ndarray) -> np.ndarray:
        return np.add.reduceat(values, starts) if n else np.zeros(0)

    n_mag = total(valid.astype(np.int64))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total(np.where(valid, mag, 0.0)) / n_mag
        group = np.repeat(np.arange(len(starts)), counts)
        variance = total(np.where(valid, (mag - mean[group]) ** 2, 0.0)) / (n_mag - 1)
        err_valid = valid & np.isfinite(err)
        err_mean = total(np.where(err_valid, err, 0.0)) / total(err_valid.astype(np.int64))
    lowest = np.minimum.reduceat(np.where(valid, mag, np.inf), starts) if n else np.zeros(0)
    highest = np.maximum.reduceat(np.where(valid, mag, -np.inf), starts) if n else np.zeros(0)

    def nullable(values: np.ndarray, ok: np.ndarray) -> pa.Array:
        return numpy_column(values, pa.float64(), mask=~ok, nan_is_null=False)

    has_mag = n_mag > 0
    values = pa.StructArray.from_arrays(
        [numpy_column(names[band_codes[by][starts]] if n else np.empty(0, object), pa.string()),
         numpy_column(counts, pa.int32()), numpy_column(n_mag, pa.int32()),
         nullable(mean, has_mag), nullable(np.sqrt(np.maximum(variance, 0)), n_mag > 1),
         nullable(err_mean, np.isfinite(err_mean)), nullable(lowest, has_mag), nullable(highest, has_mag)],
        fields=list(PHOTOMETRY_TYPE),
    )
    per_object = np.bincount(member_object[by][starts], minlength=n_objects) if n else np.zeros(n_objects, np.int64)
    offsets = numpy_column(np.r_[0, np.cumsum(per_object)], pa.int32())
    return pa.ListArray.from_arrays(offsets, values, type=OBJECTS_SCHEMA.field("photometry").type), \
        per_object.astype(np.int32)


# -- reading detections and writing cells -------------------------------------------------------
#: Up to this many ``sources`` files, the objects step reads the table itself, file by file
#: (~1 ms a file), instead of through a DuckDB catalog: importing DuckDB and opening a
#: catalog costs ~0.08 s, most of the objects step after a first image.
DIRECT_READ_FILES = 64
#: The ``sources`` rows the objects are made of (what :func:`_read_clean` keeps, in DuckDB's words).
_CLEAN_WHERE = f"ra IS NOT NULL AND dec IS NOT NULL AND (flags & {CLEAN_MASK}) = 0"
#: The columns of a detection that :func:`summarize` uses, and the cell's, as a ``sources`` file stores them.
_STORED = pa.schema([sources_schema().field(name) for name in
                     ("source_id", "image_id", "obs_time", "ra", "dec", "mag_ab", "mag_ab_err", "flags", "healpix")])


class _Sources:
    """A home's ``sources`` table as the objects step reads it: its clean detections (no flag of
    :data:`~skysift.core.flags.CLEAN_MASK` set, with a sky position) by cell, and image footprints.

    A table of at most :data:`DIRECT_READ_FILES` files (a first run, a laptop's few images) is
    read once, with pyarrow; a larger one is queried through DuckDB, which reads files in
    parallel and skips those whose statistics rule them out. Both give the same detections.
    """

    def __init__(self, home: str | os.PathLike[str]) -> None:
        self.home = Path(home)
        self._catalog: LocalCatalog | None = None
        self._stored = _read_clean(self.home)
        if self._stored is None:
            from skysift.catalog.query import LocalCatalog

            self._catalog = LocalCatalog(self.home)

    @property
    def in_memory(self) -> bool:
        """Whether every clean detection is held already (the table was read whole)."""
        return self._stored is not None

    def cells(self) -> list[int]:
        """The cells that hold a clean detection, in order."""
        if self._stored is not None:
            found = np.unique(self._stored[1])
        else:
            found = numpy_values(self._catalog.arrow(
                f"SELECT DISTINCT healpix >> {_CELL_SHIFT} AS cell FROM sources WHERE {_CLEAN_WHERE}")["cell"], null=-1)
        return sorted(int(c) for c in found if c >= 0)

    def clean(self, cells: Iterable[int] | None) -> tuple[pa.Table, np.ndarray]:
        """Clean detections (in ``cells``, or all), and the cell of each."""
        if self._stored is not None:
            table, cell = self._stored
            if cells is None:
                return table, cell
            inside = np.isin(cell, np.fromiter(cells, np.int64))
            return table.filter(numpy_column(inside, pa.bool_())), cell[inside]
        where = _CLEAN_WHERE
        params = {}
        if cells is not None:
            where += f" AND (healpix >> {_CELL_SHIFT}) IN (SELECT unnest($cells))"
            params["cells"] = sorted(int(c) for c in cells)
        table = self._catalog.arrow("SELECT source_id, image_id, obs_time, band, ra, dec, mag_ab, mag_ab_err, flags, "
                                    f"healpix >> {_CELL_SHIFT} AS cell FROM sources WHERE {where}", params)
        return table.drop_columns(["cell"]), numpy_values(table["cell"], null=-1)

    def footprints(self, image_ids: list[str]) -> list[tuple[float, float, float]]:
        """``(center_ra, center_dec, radius_deg)`` of those of ``image_ids`` stored with a footprint."""
        if self._catalog is None:  # each image's own row, not every row of the images table
            from skysift.catalog.tables import LocalTables

            tables = LocalTables(self.home)
            rows = [(r.center_ra, r.center_dec, r.radius_deg) for image_id in image_ids for r in tables.images(image_id)]
        else:
            rows = [(r["center_ra"], r["center_dec"], r["radius_deg"]) for r in self._catalog.arrow(
                "SELECT center_ra, center_dec, radius_deg FROM images WHERE image_id IN (SELECT unnest($ids))",
                {"ids": image_ids}).to_pylist()]
        return [row for row in rows if row[0] is not None and row[2] is not None]


@again_if_replaced
def _read_clean(home: Path) -> tuple[pa.Table, np.ndarray] | None:
    """The clean detections of the home's ``sources`` files (the band from each one's folder), and
    the cell of each: the rows and columns that :class:`_Sources` asks DuckDB for; None when the
    table has more than :data:`DIRECT_READ_FILES` files. A file replaced or compacted by another
    writer while being read: listed and read again."""
    files = sorted((home / "tables" / "sources").glob("*/*/*/*.parquet"))
    if len(files) > DIRECT_READ_FILES:
        return None
    nothing = empty_table(_STORED)
    parts = [nothing.add_column(3, "band", python_column([], pa.string()))]
    cells = [np.zeros(0, np.int64)]
    for path in files:
        try:
            table = read_parquet(path, columns=_STORED.names)
        except FileNotFoundError:  # replaced meanwhile: again_if_replaced makes the listing again
            raise
        except (pa.ArrowException, OSError) as exc:
            raise integrity.damaged_file_error(path, exc, home) from exc
        for field in _STORED:  # a column the file lacks is null, as DuckDB's union_by_name makes it
            if field.name not in table.column_names:
                table = table.append_column(field, pa.nulls(table.num_rows, field.type))
        table = table.select(_STORED.names).cast(_STORED)
        flags = numpy_values(table["flags"], null=-1)
        keep = (numpy_values(pc.is_valid(table["ra"])) & numpy_values(pc.is_valid(table["dec"]))
                & (flags >= 0) & (flags & CLEAN_MASK == 0))
        table = table.filter(numpy_column(keep, pa.bool_()))
        band = partition_of(path)["band"]
        parts.append(table.add_column(3, "band", repeated_string(band, table.num_rows)))
        cells.append(numpy_values(table["healpix"], null=-1 << _CELL_SHIFT) >> _CELL_SHIFT)
    return pa.concat_tables(parts).drop_columns(["healpix"]), np.concatenate(cells)


def neighbours(cells: Iterable[int]) -> set[int]:
    """``cells`` and the cells that touch them (order :data:`CELL_ORDER`)."""
    cells = np.fromiter(cells, np.int64)
    if not len(cells):
        return set()
    around = np.asarray(_CELLS.neighbours(cells)).ravel()
    return {int(c) for c in np.r_[cells, around[around >= 0]]}


def footprint_cells(center_ra: float, center_dec: float, radius_deg: float) -> set[int]:
    """The cells (order :data:`CELL_ORDER`) within ``radius_deg`` of a centre, both in deg."""
    found = _CELLS.cone_search_lonlat(center_ra * u.deg, center_dec * u.deg, radius_deg * u.deg)
    return {int(c) for c in np.atleast_1d(found)}


#: The order of the rows in a cell's file.
_FILE_ORDER = [("healpix", "ascending"), ("object_id", "ascending")]


def _write_cell(root: Path, cell: int, objects: pa.Table) -> None:
    """Replace one cell's file atomically with ``objects``, already in :data:`_FILE_ORDER`
    (remove it when the cell has no object). Cells are independent: distinct cells may be
    written at once, from different threads."""
    folder = root / f"sky_cell={cell}"
    target = folder / FILE_NAME
    if objects.num_rows == 0:
        target.unlink(missing_ok=True)
        if folder.exists() and not any(folder.iterdir()):
            folder.rmdir()
        return
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".objects.", suffix=".tmp", delete=False) as tmp:
        write_parquet(objects, tmp.name)
    os.replace(tmp.name, target)


def _stored_owners(root: Path, cells: Iterable[int], source_ids: pa.Array, image_ids: Iterable[str]) -> set[int]:
    """The cells among ``cells`` whose stored objects hold one of ``source_ids``, or a detection of
    one of ``image_ids``: their objects are being recomputed, so those files must be rewritten."""
    found = set()
    image_ids = python_column(sorted(set(image_ids)), pa.string())
    for cell in cells:
        path = root / f"sky_cell={cell}" / FILE_NAME
        if not path.exists():
            continue
        members = read_parquet(path, columns=["source_ids"])["source_ids"].combine_chunks().flatten()
        of_images = pc.replace_substring_regex(members, pattern=":.*", replacement="")  # image_id:source_num
        if pc.any(pc.is_in(members, value_set=source_ids)).as_py() or \
                pc.any(pc.is_in(of_images, value_set=image_ids)).as_py():
            found.add(int(cell))
    return found


def _recompute(sources: _Sources, root: Path, cells: set[int], radius_arcsec: float,
               image_ids: Iterable[str] = ()) -> tuple[ObjectsReport, dict[int, int]]:
    """Recompute and write the objects of ``cells``; the report and the objects of each cell written.

    The cells grow until they hold every object that has a detection in them, now
    (an object's mean position may lie in a neighbouring cell) and as stored (an
    object whose mean moved to another cell must leave its old cell's file).
    """
    cells = set(cells)
    while True:
        context = neighbours(cells)
        detections, detection_cell = sources.clean(context)
        objects, member_of = summarize(detections, radius_arcsec)
        object_cell = numpy_values(objects["healpix"]) >> _CELL_SHIFT
        inside = np.isin(detection_cell, list(cells))
        owners = {int(c) for c in object_cell[np.unique(member_of[inside])]}
        owners |= _stored_owners(root, context - cells, detections["source_id"].filter(numpy_column(inside, pa.bool_())), image_ids)
        if owners <= cells:
            break
        cells |= owners
    report = ObjectsReport(cells=len(cells), detections=detections.num_rows)
    # sorted once as the files are (by healpix, so cell by cell): each cell is a slice, not a
    # filter of the whole table per cell
    ordered = objects.sort_by(_FILE_ORDER)
    ordered_cell = numpy_values(ordered["healpix"]) >> _CELL_SHIFT
    slices = {}
    for cell in sorted(cells):
        start, stop = np.searchsorted(ordered_cell, [cell, cell + 1])
        slices[cell] = ordered.slice(start, stop - start)
    _write_cells(root, slices)
    report.objects = sum(mine.num_rows for mine in slices.values())
    return report, {cell: mine.num_rows for cell, mine in slices.items()}


def _write_cells(root: Path, slices: dict[int, pa.Table]) -> None:
    """:func:`_write_cell` for every cell of ``slices``, a few at a time; the first failure raises
    (after the writes already started have ended)."""
    with ThreadPoolExecutor(max_workers=max(1, min(WRITER_THREADS, len(slices)))) as pool:
        for done in [pool.submit(_write_cell, root, cell, objects) for cell, objects in slices.items()]:
            done.result()


def update_objects(home: str | os.PathLike[str], image_ids: Iterable[str], *,
                   radius_arcsec: float = 1.0) -> ObjectsReport:
    """Recompute the objects that the images ``image_ids`` may touch (after they were written).

    The cells recomputed are those covering each image's footprint (``images.center_ra``,
    ``center_dec``, ``radius_deg``). A home whose objects were never computed, or were
    computed with another radius, is rebuilt whole.
    """
    # this follows a run's images: what Arrow's pool (mimalloc, or malloc under `skysift`) still holds of their tables goes
    # back to the system before the step reads the sources (15 MiB after a 4096^2 image, in a run's peak)
    pa.default_memory_pool().release_unused()
    root = objects_root(home)
    if not root.exists() or stored_radius(home) not in (None, radius_arcsec):
        return rebuild_objects(home, radius_arcsec=radius_arcsec)
    image_ids = sorted(set(image_ids))
    if not image_ids:
        return ObjectsReport()
    sources = _Sources(home)
    cells: set[int] = set()
    for center_ra, center_dec, radius_deg in sources.footprints(image_ids):
        cells |= footprint_cells(center_ra, center_dec, radius_deg + radius_arcsec / 3600.0)
    if not cells:
        return ObjectsReport()
    return _recompute(sources, root, cells, radius_arcsec, image_ids)[0]


def rebuild_objects(home: str | os.PathLike[str], *, radius_arcsec: float = 1.0,
                    batch_cells: int = REBUILD_BATCH_CELLS) -> ObjectsReport:
    """Recompute every object from the ``sources`` table; remove cells left without one.

    The cells go in batches of ``batch_cells`` when the sources are queried through DuckDB; a
    table read whole (:class:`_Sources`) is one batch, its detections being in memory already.
    """
    sources = _Sources(home)
    root = objects_root(home)
    root.mkdir(parents=True, exist_ok=True)
    wanted = sources.cells()
    if sources.in_memory:
        batch_cells = max(batch_cells, len(wanted))
    report = ObjectsReport(rebuilt=True)
    written: dict[int, int] = {}  # a cell grown into a later batch holds what it was written with last
    for start in range(0, len(wanted), batch_cells):
        batch = set(wanted[start : start + batch_cells])
        part, cells = _recompute(sources, root, batch, radius_arcsec)
        report.detections += part.detections
        written.update(cells)
    for folder in root.glob("sky_cell=*"):
        cell = int(folder.name.split("=", 1)[1])
        if cell not in written:
            _write_cell(root, cell, empty_table(OBJECTS_SCHEMA))
    report.cells = len(written)
    report.objects = sum(written.values())
    return report


def catalog_count(home: str | os.PathLike[str]) -> int:
    """Objects in the table."""
    return sum(pq.ParquetFile(path).metadata.num_rows for path in objects_root(home).glob(f"sky_cell=*/{FILE_NAME}"))


def stored_radius(home: str | os.PathLike[str]) -> float | None:
    """The association radius (arcsec) the stored objects were computed with; None when there are none."""
    for path in objects_root(home).glob(f"sky_cell=*/{FILE_NAME}"):
        values = read_parquet(path, columns=["radius_arcsec"]).column(0)
        if len(values):
            return float(values[0].as_py())
    return None
