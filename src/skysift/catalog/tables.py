"""Local catalog tables: Hive-partitioned Parquet, one file per image, replace by image_id.

Layout under ``{home}/tables``::

    sources/survey=S/band=B/obs_night=YYYY-MM-DD/{image_id}.parquet
    images/ survey=S/band=B/obs_night=YYYY-MM-DD/{image_id}.parquet
    alerts/ survey=S/band=B/obs_night=YYYY-MM-DD/{image_id}.parquet

Writing an image writes its file atomically (temporary file, then rename) and then
removes any file of the same image_id left in another partition, so re-running an
image replaces its rows, never duplicates them, and never touches other images.
The same layout is what the AWS writers put under the Glue tables' locations.
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
import pyarrow.parquet as pq
from tenacity import retry, retry_if_exception_type, stop_after_attempt

from skysift.catalog import compaction, history
from skysift.catalog.schema import ALERTS_SCHEMA, IMAGES_SCHEMA, PARTITION_KEYS
from skysift.core.metadata import slug

__all__ = [
    "LISTING_ATTEMPTS",
    "POSITION_CACHE_BYTES",
    "TABLES",
    "LocalTables",
    "image_row_table",
    "partition_path",
]

log = logging.getLogger(__name__)

TABLES = ("sources", "images", "alerts")
#: Memory a store gives to cached source positions (about 40 kB per 1,000 sources).
POSITION_CACHE_BYTES = 256 * 2**20
#: Tries to read a file that another writer may be replacing (atomic renames) at that moment.
LISTING_ATTEMPTS = 3
#: Look again at once when a file was replaced (or compacted) while being found or read.
_again_if_replaced = retry(retry=retry_if_exception_type(FileNotFoundError), stop=stop_after_attempt(LISTING_ATTEMPTS),
                           reraise=True)


def partition_path(row: dict) -> str:
    """``survey=S/band=B/obs_night=N`` for an ``images`` row."""
    return "/".join(f"{key}={slug(str(row.get(key) or 'unknown'))}" for key in PARTITION_KEYS)


def image_row_table(row: dict) -> pa.Table:
    """One ``images`` row as an Arrow table (partition keys dropped: they are in the path)."""
    return pa.Table.from_pylist([{k: row.get(k) for k in IMAGES_SCHEMA.names}], schema=IMAGES_SCHEMA)


def _read_image_rows(path: Path) -> list[dict]:
    """The rows of an ``images`` file with the partition keys of its folders."""
    partition = dict(part.split("=", 1) for part in path.parts[-4:-1])
    return [row | partition for row in pq.read_table(path).to_pylist()]


def _read_positions(path: Path) -> pa.Table:
    return pq.read_table(path, columns=history.HISTORY_SCHEMA.names)


class LocalTables:
    """The local :class:`~skysift.catalog.ports.CatalogStore`: Parquet files under ``home``."""

    def __init__(self, home: str | os.PathLike[str]) -> None:
        self.home = Path(home)
        self.root = self.home / "tables"
        self.cutouts = self.home / "cutouts"
        # The 'new source' rule asks for earlier images and detections once per image:
        # rows are read from each file once (while it is unchanged), not once per question.
        self._image_rows = history.FileCache(_read_image_rows)
        self._positions = history.FileCache(_read_positions, max_bytes=POSITION_CACHE_BYTES, size=lambda t: t.nbytes)

    def table_dir(self, table: str) -> Path:
        return self.root / table

    def write_rows(self, table: str, row: dict, data: pa.Table) -> str:
        """Replace one image's rows of ``table`` with ``data`` (atomic); returns the file written."""
        image_id = row["image_id"]
        target = self.table_dir(table) / partition_path(row) / f"{image_id}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{image_id}.", suffix=".tmp", delete=False) as tmp:
            pq.write_table(data, tmp.name, compression="zstd")
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

    def write_image(self, image_row: dict, sources: pa.Table | None) -> dict[str, str]:
        """Replace this image's rows: sources first, then the images row that indexes them."""
        pointers = {}
        if sources is not None:
            pointers["sources"] = self.write_rows("sources", image_row, sources)
        else:
            self._remove("sources", image_row["image_id"])
        pointers["images"] = self.write_rows("images", image_row, image_row_table(image_row))
        return pointers

    def write_alerts(self, image_row: dict, alerts: pa.Table) -> str | None:
        if alerts.num_rows == 0:
            self._remove("alerts", image_row["image_id"])
            return None
        return self.write_rows("alerts", image_row, alerts.select(ALERTS_SCHEMA.names).cast(ALERTS_SCHEMA))

    def _sources_file(self, image_row: dict) -> Path:
        return self._image_file("sources", image_row)

    def _image_file(self, table: str, image_row: dict) -> Path:
        """The file holding one image's rows of ``table``: its own, or a compacted one."""
        folder = self.table_dir(table) / partition_path(image_row)
        path = folder / f"{image_row['image_id']}.parquet"
        if path.exists():
            return path
        for compacted in folder.glob(f"{compaction.COMPACTED_PREFIX}*.parquet"):
            if image_row["image_id"] in compaction.image_ids_of(compacted):
                return compacted
        raise FileNotFoundError(f"no {table} stored for image {image_row['image_id']}")

    def _read_image_file(self, table: str, image_row: dict) -> pa.Table:
        path = self._image_file(table, image_row)
        if path.name.startswith(compaction.COMPACTED_PREFIX):
            return pq.read_table(path, filters=[("image_id", "=", image_row["image_id"])])
        return pq.read_table(path)

    def read_sources(self, image_row: dict) -> pa.Table:
        return self._read_image_file("sources", image_row)

    def read_alerts(self, image_row: dict) -> pa.Table:
        """The ``alerts`` rows stored for one image (none: an empty table)."""
        try:
            return self._read_image_file("alerts", image_row).select(ALERTS_SCHEMA.names).cast(ALERTS_SCHEMA)
        except FileNotFoundError:
            return ALERTS_SCHEMA.empty_table()

    def compact(self, tables: tuple[str, ...] = TABLES) -> dict[str, compaction.CompactionReport]:
        """Merge each partition's files into one (see :mod:`skysift.catalog.compaction`)."""
        return {t: compaction.compact_table(self.table_dir(t), "healpix" if t == "sources" else None) for t in tables}

    @_again_if_replaced
    def image_rows(self) -> list[dict]:
        """Every ``images`` row (partition keys included), each file read once while unchanged."""
        paths = set(self.table_dir("images").glob("*/*/*/*.parquet"))
        self._image_rows.forget_missing(paths)
        return [row for path in sorted(paths) for row in self._image_rows.get(path)]

    def earlier_images(self, center_ra: float, center_dec: float, radius_deg: float,
                       before: datetime) -> list[dict]:
        return [dict(r) for r in history.images_reaching(self.image_rows(), center_ra, center_dec, radius_deg, before)]

    def earlier_sources(self, center_ra: float, center_dec: float, radius_deg: float,
                        before: datetime) -> pa.Table:
        """From the earlier overlapping images' own files (cached), not a scan of the whole table."""
        return history.sources_in_cone(
            (self._positions_of(row) for row in self.earlier_images(center_ra, center_dec, radius_deg, before)),
            center_ra, center_dec, radius_deg)

    def _positions_of(self, image_row: dict) -> pa.Table:
        try:
            path, table = self._positions_file(image_row)
        except FileNotFoundError:  # the image is being re-run, or the tables were damaged
            log.warning("no sources file for image %s; its detections are left out", image_row["image_id"])
            return history.HISTORY_SCHEMA.empty_table()
        if path.name.startswith(compaction.COMPACTED_PREFIX):
            table = table.filter(pa.compute.equal(table["image_id"], image_row["image_id"]))
        return table

    @_again_if_replaced
    def _positions_file(self, image_row: dict) -> tuple[Path, pa.Table]:
        """The file holding the image's detections, and its cached positions."""
        path = self._sources_file(image_row)
        return path, self._positions.get(path)

    def record_failure(self, image_row: dict, error: dict) -> str:
        """A JSON quarantine record ``{home}/quarantine/{image_id}.json``."""
        folder = self.home / "quarantine"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{image_row['image_id']}.json"
        record = {"image_id": image_row["image_id"], "uri": image_row.get("uri"), **error,
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

    def read_matches(self, image_row: dict) -> pa.Table | None:
        """The ``matches`` rows of one image (``skysift crossmatch``): empty when it has none,
        None when no reference catalog was ever matched in this home."""
        if not any(self.table_dir("matches").glob("*/*/*/*.parquet")):
            return None
        try:
            return self._read_image_file("matches", image_row)
        except FileNotFoundError:
            return pa.table({"source_id": pa.array([], pa.string())})

