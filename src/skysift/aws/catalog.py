"""The AWS :class:`~skysift.ports.CatalogStore`: Parquet in the catalog bucket, Glue partitions.

Layout (the same as :class:`skysift.tables.LocalTables`, under the Glue tables' locations)::

    s3://CATALOG/sources/survey=S/band=B/obs_night=N/{image_id}.parquet
    s3://CATALOG/images/ survey=S/band=B/obs_night=N/{image_id}.parquet
    s3://CATALOG/alerts/ survey=S/band=B/obs_night=N/{image_id}.parquet
    s3://CATALOG/quarantine/{image_id}.json
    s3://CATALOG/cutouts/{alert_id}.fits

One object per image at a key fixed by its image_id and partition, so a duplicate
event or a re-run overwrites that object: rows are replaced, never duplicated, even
when two deliveries of the same event race. Partitions are registered in the Glue
tables the template declares, through awswrangler (``AlreadyExists`` is fine).
"""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime

import awswrangler as wr
import boto3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from botocore.exceptions import ClientError

from ..metadata import slug
from ..schema import ALERTS_SCHEMA, IMAGES_SCHEMA, PARTITION_KEYS
from ..tables import image_row_table, partition_path

log = logging.getLogger(__name__)


def partition_values(row: dict) -> list[str]:
    return [slug(str(row.get(key) or "unknown")) for key in PARTITION_KEYS]


def _angular_distance_deg(ra1, dec1, ra2, dec2):
    ra1, dec1, ra2, dec2 = (np.radians(np.asarray(v, dtype=float)) for v in (ra1, dec1, ra2, dec2))
    cos = np.sin(dec1) * np.sin(dec2) + np.cos(dec1) * np.cos(dec2) * np.cos(ra1 - ra2)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


class S3GlueCatalog:
    """Catalog rows in S3 under the Glue tables ``sources``, ``images`` and ``alerts``."""

    def __init__(self, bucket: str, database: str, *, session: boto3.Session | None = None) -> None:
        self.bucket = bucket
        self.database = database
        self.session = session or boto3.Session()
        self.s3 = self.session.client("s3")

    # -- writing ---------------------------------------------------------------------------
    def key(self, table: str, row: dict) -> str:
        return f"{table}/{partition_path(row)}/{row['image_id']}.parquet"

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def _put_table(self, table: str, row: dict, data: pa.Table) -> str:
        key = self.key(table, row)
        buffer = io.BytesIO()
        pq.write_table(data, buffer, compression="zstd")
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=buffer.getvalue())
        folder = self.uri(key.rsplit("/", 1)[0] + "/")
        wr.catalog.add_parquet_partitions(
            database=self.database, table=table, partitions_values={folder: partition_values(row)},
            compression="zstd", boto3_session=self.session,
        )
        return self.uri(key)

    def _delete(self, table: str, row: dict) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=self.key(table, row))

    def write_sources(self, image_row: dict, sources: pa.Table | None) -> str | None:
        """Replace this image's ``sources`` rows (none: remove them)."""
        if sources is None:
            self._delete("sources", image_row)
            return None
        return self._put_table("sources", image_row, sources)

    def write_image_row(self, image_row: dict) -> str:
        """Replace this image's ``images`` row."""
        return self._put_table("images", image_row, image_row_table(image_row))

    def write_image(self, image_row: dict, sources: pa.Table | None) -> dict[str, str]:
        """Sources first, then the images row that indexes them (as locally)."""
        pointers = {}
        sources_uri = self.write_sources(image_row, sources)
        if sources_uri:
            pointers["sources"] = sources_uri
        pointers["images"] = self.write_image_row(image_row)
        return pointers

    def write_alerts(self, image_row: dict, alerts: pa.Table) -> str | None:
        if alerts.num_rows == 0:
            self._delete("alerts", image_row)
            return None
        return self._put_table("alerts", image_row, alerts.select(ALERTS_SCHEMA.names).cast(ALERTS_SCHEMA))

    def record_failure(self, image_row: dict, error: dict) -> str:
        """``s3://CATALOG/quarantine/{image_id}.json``; the raw object is left as it is."""
        key = f"quarantine/{image_row['image_id']}.json"
        record = {"image_id": image_row["image_id"], "uri": image_row.get("uri"), **error,
                  "recorded_at": datetime.now(UTC).isoformat()}
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=json.dumps(record, indent=2).encode(),
                           ContentType="application/json")
        return self.uri(key)

    def put_cutout(self, name: str, fits_bytes: bytes) -> str:
        key = f"cutouts/{name}.fits"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=fits_bytes, ContentType="application/fits")
        return self.uri(key)

    # -- reading ---------------------------------------------------------------------------
    def _get_table(self, key: str) -> pa.Table:
        body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return pq.read_table(io.BytesIO(body))

    def read_sources(self, image_row: dict) -> pa.Table:
        return self._get_table(self.key("sources", image_row))

    def read_image_row(self, image_row: dict) -> dict | None:
        try:
            rows = self._get_table(self.key("images", image_row)).to_pylist()
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return None
            raise
        return rows[0] if rows else None

    def _images(self) -> list[dict]:
        """Every ``images`` row (one small object per image), with its partition values."""
        rows = []
        for path in wr.s3.list_objects(f"s3://{self.bucket}/images/", suffix=".parquet", boto3_session=self.session):
            key = path.split("/", 3)[3]
            partition = dict(part.split("=", 1) for part in key.split("/")[1:-1])
            table = self._get_table(key)
            rows += [{**row, **partition} for row in table.select(IMAGES_SCHEMA.names).cast(IMAGES_SCHEMA).to_pylist()]
        return rows

    def earlier_images(self, center_ra: float, center_dec: float, radius_deg: float,
                       before: datetime) -> list[dict]:
        """Status-ok ``images`` rows observed before ``before`` whose footprint reaches the cone.

        Reads the image index (one small object per image); at survey scale the same
        question is an Athena query (``skysift query --athena``).
        """
        rows = [r for r in self._images()
                if r["status"] == "ok" and r["obs_time"] is not None and r["obs_time"] < before
                and r["center_ra"] is not None and r["center_dec"] is not None]
        if not rows:
            return []
        distance = _angular_distance_deg([r["center_ra"] for r in rows], [r["center_dec"] for r in rows],
                                         center_ra, center_dec)
        reach = np.array([radius_deg + (r["radius_deg"] or 0.0) for r in rows])
        picked = [r for r, d, limit in zip(rows, distance, reach, strict=True) if d <= limit]
        return sorted(picked, key=lambda r: r["obs_time"])

    def earlier_sources(self, center_ra: float, center_dec: float, radius_deg: float,
                        before: datetime) -> pa.Table:
        """ra/dec/image_id/flags of earlier detections in the cone, from the overlapping images only."""
        schema = pa.schema([("ra", pa.float64()), ("dec", pa.float64()), ("image_id", pa.string()), ("flags", pa.int32())])
        parts = []
        for row in self.earlier_images(center_ra, center_dec, radius_deg, before):
            table = self.read_sources(row).select(schema.names).cast(schema)
            if table.num_rows == 0:
                continue
            distance = _angular_distance_deg(table["ra"].to_numpy(), table["dec"].to_numpy(), center_ra, center_dec)
            parts.append(table.filter(pa.array(distance <= radius_deg)))
        return pa.concat_tables(parts) if parts else schema.empty_table()
