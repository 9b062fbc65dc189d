"""Local catalog tables: Hive-partitioned Parquet, one file per image, replace by image_id.

Layout under ``{home}/tables``::

    sources/survey=S/band=B/obs_night=YYYY-MM-DD/{image_id}.parquet
    images/ survey=S/band=B/obs_night=YYYY-MM-DD/{image_id}.parquet
    alerts/ survey=S/band=B/obs_night=YYYY-MM-DD/{image_id}.parquet

Writing an image writes its file atomically (temporary file, then rename) and then
removes any file of the same image_id left in another partition, so re-running an
image replaces its rows, never duplicates them, and never touches other images.
The same layout is what the AWS writers put under the Glue tables' locations.

:meth:`LocalTables.images` is the one reader of the ``images`` rows (as
:class:`~skysift.catalog.records.ImageRecord` s): the survey's resume and alert phases, the
'new source' rule, completeness and cross-matching all read them through it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute  # makes pa.compute available
from tenacity import retry, retry_if_exception_type, stop_after_attempt

from skysift.catalog import compaction, history, integrity
from skysift.catalog.arrow import empty_table, read_parquet, rows_of, write_parquet
from skysift.catalog.records import ImageRecord
from skysift.catalog.schema import ALERTS_SCHEMA
from skysift.core.metadata import slug

__all__ = ["LISTING_ATTEMPTS", "POSITION_CACHE_BYTES", "SOURCES_CACHE_BYTES", "TABLES", "LocalTables", "again_if_replaced",
           "partition_of", "partition_path"]

log = logging.getLogger(__name__)

TABLES = ("sources", "images", "alerts")
#: Memory a store gives to cached source positions (about 40 kB per 1,000 sources).
POSITION_CACHE_BYTES = 256 * 2**20
#: Memory a store gives to cached ``sources`` rows of images (their own files): a survey's
#: alert packets read the rows of every earlier image once per later image.
SOURCES_CACHE_BYTES = 128 * 2**20
#: Tries to read a file that another writer may be replacing (atomic renames) at that moment.
LISTING_ATTEMPTS = 3
#: Look again at once when a file was replaced (or compacted) while being found or read.
again_if_replaced = retry(retry=retry_if_exception_type(FileNotFoundError), stop=stop_after_attempt(LISTING_ATTEMPTS),
                           reraise=True)


def partition_path(image: ImageRecord) -> str:
    """``survey=S/band=B/obs_night=N``: the folder of an image's rows in every table."""
    return "/".join(f"{key}={slug(str(value or 'unknown'))}" for key, value in image.partition.items())


def partition_of(path: Path) -> dict[str, str]:
    """The partition keys of a table file, from its folders (``survey=S/band=B/obs_night=N/file``)."""
    return dict(part.split("=", 1) for part in path.parts[-4:-1])


def _read_image_records(path: Path) -> list[ImageRecord]:
    """The rows of an ``images`` file (its own or a compacted one), with the partition keys
    of its folders; a file that is not Parquet is named in a :class:`DamagedTable`."""
    partition = partition_of(path)
    try:
        rows = rows_of(read_parquet(path))
    except FileNotFoundError:
        raise  # replaced or compacted meanwhile: the listing is made again
    except (pa.ArrowException, OSError) as exc:
        raise integrity.damaged_file_error(path, exc, path.parents[5]) from exc
    return [ImageRecord.from_row(row | partition) for row in rows]


def _read_positions(path: Path) -> pa.Table:
    return read_parquet(path, columns=history.HISTORY_SCHEMA.names)


class LocalTables:
    """The local :class:`~skysift.catalog.ports.CatalogStore`: Parquet files under ``home``."""

    def __init__(self, home: str | os.PathLike[str]) -> None:
        self.home = Path(home)
        self.root = self.home / "tables"
        self.cutouts = self.home / "cutouts"
        # The 'new source' rule asks for earlier images and detections once per image:
        # rows are read from each file once (while it is unchanged), not once per question.
        self._image_records = history.FileCache(_read_image_records)
        self._positions = history.FileCache(_read_positions, max_bytes=POSITION_CACHE_BYTES, size=lambda t: t.nbytes)
        self._sources = history.FileCache(read_parquet, max_bytes=SOURCES_CACHE_BYTES, size=lambda t: t.nbytes)

    def table_dir(self, table: str) -> Path:
        return self.root / table

    def write_rows(self, table: str, image: ImageRecord, data: pa.Table) -> str:
        """Replace one image's rows of ``table`` with ``data`` (atomic); returns the file written."""
        image_id = image.image_id
        target = self.table_dir(table) / partition_path(image) / f"{image_id}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{image_id}.", suffix=".tmp", delete=False) as tmp:
            write_parquet(data, tmp.name)
        os.replace(tmp.name, target)
        for stale in self.table_dir(table).glob(f"*/*/*/{image_id}.parquet"):
            if stale != target:
                stale.unlink(missing_ok=True)
        compaction.remove_image(self.table_dir(table), image_id)
        return str(target)

    def _remove(self, table: str, image_id: str) -> None:
        for stale in self.table_dir(table).glob(f"*/*/*/{image_id}.parquet"):
            stale.unlink(missing_ok=True)
        compaction.remove_image(self.table_dir(table), image_id)

    def write_image(self, image: ImageRecord, sources: pa.Table | None) -> dict[str, str]:
        """Replace this image's rows: sources first, then the images row that indexes them."""
        pointers = {}
        if sources is not None:
            pointers["sources"] = self.write_rows("sources", image, sources)
        else:
            self._remove("sources", image.image_id)
        pointers["images"] = self.write_rows("images", image, image.to_table())
        return pointers

    def write_alerts(self, image: ImageRecord, alerts: pa.Table) -> str | None:
        if alerts.num_rows == 0:
            self._remove("alerts", image.image_id)
            return None
        return self.write_rows("alerts", image, alerts.select(ALERTS_SCHEMA.names).cast(ALERTS_SCHEMA))

    def _sources_file(self, image: ImageRecord) -> Path:
        return self._image_file("sources", image)

    def _image_file(self, table: str, image: ImageRecord) -> Path:
        """The file holding one image's rows of ``table``: its own, or a compacted one."""
        folder = self.table_dir(table) / partition_path(image)
        path = folder / f"{image.image_id}.parquet"
        if path.exists():
            return path
        for compacted in folder.glob(f"{compaction.COMPACTED_PREFIX}*.parquet"):
            if image.image_id in compaction.image_ids_of(compacted):
                return compacted
        raise FileNotFoundError(f"no {table} stored for image {image.image_id}")

    def _read_image_file(self, table: str, image: ImageRecord) -> pa.Table:
        path = self._image_file(table, image)
        if path.name.startswith(compaction.COMPACTED_PREFIX):
            return compaction.image_rows(path, image.image_id)
        return read_parquet(path)

    def read_sources(self, image: ImageRecord) -> pa.Table:
        """One image's ``sources`` rows; those of an image's own file are read once while it
        is unchanged (a compacted file is read for the image's rows each time)."""
        path = self._sources_file(image)
        if path.name.startswith(compaction.COMPACTED_PREFIX):
            return self._read_image_file("sources", image)
        return self._sources.get(path)

    def read_alerts(self, image: ImageRecord) -> pa.Table:
        """The ``alerts`` rows stored for one image (none: an empty table)."""
        try:
            return self._read_image_file("alerts", image).select(ALERTS_SCHEMA.names).cast(ALERTS_SCHEMA)
        except FileNotFoundError:
            return empty_table(ALERTS_SCHEMA)

    def compact(self, tables: tuple[str, ...] = TABLES) -> dict[str, compaction.CompactionReport]:
        """Merge each partition's files into one (see :mod:`skysift.catalog.compaction`)."""
        return {t: compaction.compact_table(self.table_dir(t), "healpix" if t == "sources" else None) for t in tables}

    @again_if_replaced
    def images(self, image_id: str | None = None) -> list[ImageRecord]:
        """The ``images`` rows (partition keys included): the one reader of the images table.

        Each file is read once while it is unchanged (the store keeps what it read).
        ``image_id``: only that image's row, read from its own file or the compacted file
        that lists it (an empty list when it has none). A file that cannot be read raises
        :class:`~skysift.catalog.integrity.DamagedTable`, naming it.
        """
        root = self.table_dir("images")
        if image_id is None:
            paths = set(root.glob("*/*/*/*.parquet"))
            self._image_records.forget_missing(paths)
        else:
            paths = set(root.glob(f"*/*/*/{image_id}.parquet")) | {
                path for path in root.glob(f"*/*/*/{compaction.COMPACTED_PREFIX}*.parquet")
                if image_id in compaction.image_ids_of(path)}
        records = [record for path in sorted(paths) for record in self._image_records.get(path)]
        return records if image_id is None else [r for r in records if r.image_id == image_id]

    def image(self, image_id: str) -> ImageRecord | None:
        """The stored row of ``image_id``, or None (see :meth:`images`)."""
        found = self.images(image_id)
        return found[0] if found else None

    def earlier_images(self, center_ra: float, center_dec: float, radius_deg: float,
                       before: datetime) -> list[ImageRecord]:
        return history.images_reaching(self.images(), center_ra, center_dec, radius_deg, before)

    def earlier_sources(self, center_ra: float, center_dec: float, radius_deg: float,
                        before: datetime) -> pa.Table:
        """From the earlier overlapping images' own files (cached), not a scan of the whole table."""
        return history.sources_in_cone(
            (self._positions_of(row) for row in self.earlier_images(center_ra, center_dec, radius_deg, before)),
            center_ra, center_dec, radius_deg)

    def _positions_of(self, image: ImageRecord) -> pa.Table:
        try:
            path, table = self._positions_file(image)
        except FileNotFoundError:  # the image is being re-run, or the tables were damaged
            log.warning("no sources file for image %s; its detections are left out", image.image_id)
            return empty_table(history.HISTORY_SCHEMA)
        if path.name.startswith(compaction.COMPACTED_PREFIX):
            table = compaction.rows_of_image(table, image.image_id)
        return table

    @again_if_replaced
    def _positions_file(self, image: ImageRecord) -> tuple[Path, pa.Table]:
        """The file holding the image's detections, and its cached positions."""
        path = self._sources_file(image)
        return path, self._positions.get(path)

    def record_failure(self, image: ImageRecord, error: dict) -> str:
        """A JSON quarantine record ``{home}/quarantine/{image_id}.json``."""
        folder = self.home / "quarantine"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{image.image_id}.json"
        record = {"image_id": image.image_id, "uri": image.uri, **error,
                  "recorded_at": datetime.now(UTC).isoformat()}
        path.write_text(json.dumps(record, indent=2))
        return str(path)

    def put_cutout(self, name: str, fits_bytes: bytes) -> str:
        self.cutouts.mkdir(parents=True, exist_ok=True)
        path = self.cutouts / f"{name}.fits"
        path.write_bytes(fits_bytes)
        return str(path)

    def packet_path(self, name: str) -> Path:
        """Where the alert packet ``name`` (an alert_id) is: ``{home}/packets/{name}.avro``."""
        return self.home / "packets" / f"{name}.avro"

    def put_packet(self, name: str, avro_bytes: bytes) -> str:
        """Write an alert packet atomically (a reader never sees half of one)."""
        path = self.packet_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{name}.", suffix=".tmp", delete=False) as tmp:
            tmp.write(avro_bytes)
        os.replace(tmp.name, path)
        return str(path)

    def read_matches(self, image: ImageRecord) -> pa.Table | None:
        """The ``matches`` rows of one image (``skysift crossmatch``): empty when it has none,
        None when no reference catalog was ever matched in this home."""
        if not any(self.table_dir("matches").glob("*/*/*/*.parquet")):
            return None
        try:
            return self._read_image_file("matches", image)
        except FileNotFoundError:
            return empty_table(pa.schema([("source_id", pa.string())]))
