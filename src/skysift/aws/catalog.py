"""The AWS :class:`~skysift.catalog.ports.CatalogStore`: Parquet in the catalog bucket, Glue partitions.

Layout (the same as :class:`skysift.catalog.tables.LocalTables`, under the Glue tables' locations)::

    s3://CATALOG/sources/survey=S/band=B/obs_night=N/{image_id}.parquet
    s3://CATALOG/images/ survey=S/band=B/obs_night=N/{image_id}.parquet
    s3://CATALOG/alerts/ survey=S/band=B/obs_night=N/{image_id}.parquet
    s3://CATALOG/quarantine/{image_id}/{execution}.json
    s3://CATALOG/cutouts/{alert_id}.fits
    s3://CATALOG/packets/{alert_id}.avro
    s3://CATALOG/footprints/hpx6={cell}/{image_id}.json

The footprints are a spatial index of the ``images`` rows (status ok): one small object
per HEALPix cell (order 6, ~0.9 deg) that an image's disc touches. The "new source"
rule asks which earlier images cover a position; listing the few cells around it
answers that in a handful of requests however large the survey grows, where reading
the whole image index would grow with every image ingested.

One object per image at a key fixed by its image_id and partition, so a duplicate
event or a re-run overwrites that object: rows are replaced, never duplicated, even
when two deliveries of the same event race. Partitions are registered in the Glue
tables the template declares, through awswrangler (``AlreadyExists`` is fine), *before*
the object is written: an object in the bucket always has its partition, and a crash in
between leaves at most an empty partition.

Nothing here deletes: an image's ``images`` row is its commit point (written last, by Record),
a failure is recorded beside it (``quarantine/``) and in a ``failed`` row only where no
successful row is (:meth:`S3GlueCatalog.write_failed_image_record`, a conditional put), so a
failing execution can never remove or overwrite what a successful one wrote.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import awswrangler as wr
import boto3
import pyarrow as pa
import pyarrow.parquet as pq
from botocore.exceptions import ClientError

from skysift.catalog import history
from skysift.catalog.arrow import write_parquet
from skysift.catalog.records import ImageRecord, ImageStatus
from skysift.catalog.schema import ALERTS_SCHEMA
from skysift.catalog.tables import partition_path
from skysift.core.metadata import slug

__all__ = [
    "FOOTPRINT_ORDER",
    "S3GlueCatalog",
    "footprint_cells",
    "partition_values",
    "put_unless_success",
]

log = logging.getLogger(__name__)


FOOTPRINT_ORDER = 6


def footprint_cells(ra_deg: float, dec_deg: float, radius_deg: float) -> list[int]:
    """Nested HEALPix cells (order 6) that a disc may touch (padded by one cell size)."""
    import astropy.units as u
    from astropy_healpix import HEALPix

    grid = HEALPix(nside=2**FOOTPRINT_ORDER, order="nested")
    padded = radius_deg * u.deg + grid.pixel_resolution
    return sorted(int(c) for c in grid.cone_search_lonlat(ra_deg * u.deg, dec_deg * u.deg, radius=padded))


def partition_values(image: ImageRecord) -> list[str]:
    return [slug(str(value or "unknown")) for value in image.partition.values()]


#: S3's answers to a conditional put whose condition no longer holds (or that lost a race to another).
_CONDITION_FAILED = {"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "412", "409"}


def put_unless_success(s3, bucket: str, key: str, body: bytes, succeeded: Callable[[bytes], bool], **extra) -> bool:
    """Put ``body`` at ``key`` unless the object there records a success; True if it was written.

    A conditional put (``If-None-Match: *`` where nothing is, ``If-Match: ETAG`` over an earlier
    failure), so a success written between the read and the put is never overwritten.
    """
    for _ in range(3):
        try:
            current = s3.get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in ("NoSuchKey", "404"):
                raise
            condition = {"IfNoneMatch": "*"}
        else:
            if succeeded(current["Body"].read()):
                return False
            condition = {"IfMatch": current["ETag"]}
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=body, **condition, **extra)
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in _CONDITION_FAILED:
                raise
            continue  # someone wrote it meanwhile: look again
        return True
    return False


def _is_success_row(body: bytes) -> bool:
    rows = pq.read_table(io.BytesIO(body), columns=["status"]).to_pylist()
    return any(row["status"] in (ImageStatus.OK, ImageStatus.INDEXED) for row in rows)


class S3GlueCatalog:
    """Catalog rows in S3 under the Glue tables ``sources``, ``images`` and ``alerts``."""

    def __init__(self, bucket: str, database: str, *, session: boto3.Session | None = None) -> None:
        self.bucket = bucket
        self.database = database
        self.session = session or boto3.Session()
        self.s3 = self.session.client("s3")

    # -- writing ---------------------------------------------------------------------------
    def key(self, table: str, image: ImageRecord) -> str:
        return f"{table}/{partition_path(image)}/{image.image_id}.parquet"

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def _add_partition(self, table: str, image: ImageRecord) -> str:
        """Register the image's partition of ``table`` in Glue (before any object is written there)."""
        key = self.key(table, image)
        folder = self.uri(key.rsplit("/", 1)[0] + "/")
        wr.catalog.add_parquet_partitions(
            database=self.database, table=table, partitions_values={folder: partition_values(image)},
            compression="zstd", boto3_session=self.session,
        )
        return key

    @staticmethod
    def _parquet(data: pa.Table) -> bytes:
        buffer = io.BytesIO()
        write_parquet(data, buffer)
        return buffer.getvalue()

    def _put_table(self, table: str, image: ImageRecord, data: pa.Table) -> str:
        key = self._add_partition(table, image)
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=self._parquet(data))
        return self.uri(key)

    def write_sources(self, image: ImageRecord, sources: pa.Table | None) -> str | None:
        """Replace this image's ``sources`` rows (None: an image without sources has no object)."""
        if sources is None:
            return None
        return self._put_table("sources", image, sources)

    def write_failed_image_record(self, image: ImageRecord) -> str | None:
        """The ``failed`` images row, unless a successful row is there (then None: success wins)."""
        key = self._add_partition("images", image)
        written = put_unless_success(self.s3, self.bucket, key, self._parquet(image.to_table()), _is_success_row)
        return self.uri(key) if written else None

    def write_image_record(self, image: ImageRecord) -> str:
        """Replace this image's ``images`` row (the commit point), then index it in the footprint cells."""
        uri = self._put_table("images", image, image.to_table())
        if image.status is ImageStatus.OK and image.center_ra is not None:
            document = json.dumps({**image.to_json(), "processed_at": None}, default=str).encode()
            for cell in footprint_cells(image.center_ra, image.center_dec, image.radius_deg or 0.0):
                self.s3.put_object(Bucket=self.bucket, Key=f"footprints/hpx{FOOTPRINT_ORDER}={cell}/{image.image_id}.json",
                                   Body=document, ContentType="application/json")
        return uri

    def write_image(self, image: ImageRecord, sources: pa.Table | None) -> dict[str, str]:
        """Sources first, then the images row that indexes them (as locally)."""
        pointers = {}
        sources_uri = self.write_sources(image, sources)
        if sources_uri:
            pointers["sources"] = sources_uri
        pointers["images"] = self.write_image_record(image)
        return pointers

    def write_alerts(self, image: ImageRecord, alerts: pa.Table) -> str | None:
        """This image's ``alerts`` rows (the alerts sent); an image without alerts has no object."""
        if alerts.num_rows == 0:
            return None
        return self._put_table("alerts", image, alerts.select(ALERTS_SCHEMA.names).cast(ALERTS_SCHEMA))

    def record_failure(self, image: ImageRecord, error: dict, execution: str = "unnamed") -> str:
        """``s3://CATALOG/quarantine/{image_id}/{execution}.json``: one record per failed execution,
        never overwriting another's; the raw object is left as it is."""
        key = f"quarantine/{image.image_id}/{execution}.json"
        record = {"image_id": image.image_id, "uri": image.uri, "execution": execution, **error,
                  "recorded_at": datetime.now(UTC).isoformat()}
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=json.dumps(record, indent=2).encode(),
                           ContentType="application/json")
        return self.uri(key)

    def put_cutout(self, name: str, fits_bytes: bytes) -> str:
        key = f"cutouts/{name}.fits"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=fits_bytes, ContentType="application/fits")
        return self.uri(key)

    def put_packet(self, name: str, avro_bytes: bytes) -> str:
        """``s3://CATALOG/packets/{alert_id}.avro``: the alert packet (Avro), beside the cutouts."""
        key = f"packets/{name}.avro"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=avro_bytes, ContentType="application/avro")
        return self.uri(key)

    # -- reading ---------------------------------------------------------------------------
    def _get_table(self, key: str) -> pa.Table:
        body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return pq.read_table(io.BytesIO(body))

    def read_sources(self, image: ImageRecord) -> pa.Table:
        return self._get_table(self.key("sources", image))

    def read_alerts(self, image: ImageRecord) -> pa.Table:
        """This image's stored ``alerts`` rows (the alerts sent), empty when it has none."""
        try:
            return self._get_table(self.key("alerts", image))
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return ALERTS_SCHEMA.empty_table()
            raise

    def registered_footprints(self, cells: Iterable[int]) -> dict[str, tuple[ImageRecord, datetime]]:
        """The image rows registered in these cells, and when each was registered, by image_id."""
        found: dict[str, tuple[ImageRecord, datetime]] = {}
        paginator = self.s3.get_paginator("list_objects_v2")
        for cell in cells:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=f"footprints/hpx{FOOTPRINT_ORDER}={cell}/"):
                for obj in page.get("Contents", []):
                    image_id = obj["Key"].rsplit("/", 1)[1].removesuffix(".json")
                    if image_id not in found:
                        body = self.s3.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read()
                        found[image_id] = (ImageRecord.from_json(json.loads(body)), obj["LastModified"])
        return found

    def _footprints(self, cells: list[int]) -> dict[str, ImageRecord]:
        """The image rows registered in these cells, by image_id."""
        return {image_id: image for image_id, (image, _) in self.registered_footprints(cells).items()}

    def earlier_images(self, center_ra: float, center_dec: float, radius_deg: float,
                       before: datetime) -> list[ImageRecord]:
        """Status-ok ``images`` rows observed before ``before`` whose footprint reaches the cone."""
        rows = list(self._footprints(footprint_cells(center_ra, center_dec, radius_deg)).values())
        return history.images_reaching(rows, center_ra, center_dec, radius_deg, before)

    def earlier_sources(self, center_ra: float, center_dec: float, radius_deg: float,
                        before: datetime) -> pa.Table:
        """ra/dec/image_id/flags of earlier detections in the cone, from the overlapping images only."""
        return history.sources_in_cone(
            (self.read_sources(row) for row in self.earlier_images(center_ra, center_dec, radius_deg, before)),
            center_ra, center_dec, radius_deg)
