"""An emulated HelioCloud: SDO/AIA level-1 frames in a public bucket, published with CloudCatalog.

The layout is what HelioCloud's ``gov-nasa-hdrl-data1`` bucket serves and what the
``cloudcatalog`` client (behind ``sunpy-cloudcatalog``'s Fido client) reads:

* ``catalog.json`` at the bucket root: ``status`` 1200 and one ``catalog`` entry per
  channel (``id`` ``aia_0171``, ``index`` ``s3://BUCKET/sdo/aia/registries/``, ``start``,
  ``stop``, ``indextype`` ``csv``, ``filetype`` ``fits``);
* one index file per channel and year, ``{index}{id}_{YYYY}.csv``: the four fields of the
  specification (section 4: ``start``, ``stop``, ``datakey``, ``filesize``, times as
  ``YYYY-MM-DDTHH:MM:SSZ``) with absolute ``s3://`` keys, under a header line. The header
  is ``start,stop,datakey,filesize`` by default; :data:`HDRL_GENERATOR_HEADER` is the one
  CloudCatalog's own ``manifest2indices`` writes, which ``cloudcatalog`` 1.3.3 cannot read
  under pandas 3 (it assigns to the read-only ``DataFrame.columns.values`` to rename
  ``#start`` and ``s3key``);
* the frames at ``sdo/aia/YYYYMMDD/WWWW/sdo_aia_h2_YYYYMMDDTHHMMSS_WWWW_v1.fits``: an
  empty primary HDU and the image as a RICE-compressed int16 HDU 1 (as AIA level-1 files
  from JSOC are), with the real level-1 header of sunpy's ``aia_171_level1.fits``
  re-timed and re-pointed (:mod:`solar_series`), small pixel arrays.

The client finds the catalog through boto3 (unsigned first), so pointing
``AWS_ENDPOINT_URL`` at moto's server is all it takes; s3fs honours the same variable.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pytest
from astropy.io import fits
from solar_series import LagFrames, SeriesFrame

BUCKET = "gov-nasa-hdrl-data1"
REGISTRY_PREFIX = "sdo/aia/registries/"
#: Index header whose names are the specification's fields (what the client's DataFrame ends up with).
SPEC_HEADER = "start,stop,datakey,filesize"
#: Index header written by cloudcatalog's generators/manifest2indices.py.
HDRL_GENERATOR_HEADER = "#start,stop,s3key,filesize"
#: Credentials the publisher (not the reader) uses to fill the bucket.
PUBLISHER = {"aws_access_key_id": "publisher", "aws_secret_access_key": "publisher", "region_name": "us-east-1"}


def dataset_id(wavelength: int) -> str:
    return f"aia_{wavelength:04d}"


def frame_key(frame: SeriesFrame) -> str:
    when, w = frame.when, frame.wavelength
    return f"sdo/aia/{when:%Y%m%d}/{w:04d}/sdo_aia_h2_{when:%Y%m%dT%H%M%S}_{w:04d}_v1.fits"


def level1_bytes(frame: SeriesFrame) -> bytes:
    """The frame as an AIA level-1 file: empty primary HDU, RICE-compressed int16 image in HDU 1."""
    header = frame.header.copy()
    for key in ("SIMPLE", "EXTEND", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "BSCALE", "BZERO"):
        header.remove(key, ignore_missing=True)
    header["BLANK"] = -32768
    counts = np.clip(np.round(frame.counts), -32767, 32767).astype(np.int16)
    hdul = fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(counts, header, compression_type="RICE_1")])
    buffer = io.BytesIO()
    hdul.writeto(buffer, output_verify="silentfix")
    return buffer.getvalue()


def _isoz(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def catalog_json(bucket: str, wavelengths: list[int], start: datetime, stop: datetime) -> dict:
    """The bucket's CloudCatalog ``catalog.json``."""
    return {
        "version": "1.0",
        "endpoint": f"s3://{bucket}/",
        "name": "GSFC HelioCloud Set 1 (emulated)",
        "egress": "public, no-egress",
        "contact": "skysift tests",
        "status": {"code": 1200, "message": "OK request successful"},
        "catalog": [
            {"id": dataset_id(w), "index": f"s3://{bucket}/{REGISTRY_PREFIX}", "title": f"AIA {w:04d} FITS data",
             "start": _isoz(start), "stop": _isoz(stop), "modification": "2024-01-01T00:00:00Z",
             "indextype": "csv", "filetype": "fits"}
            for w in wavelengths
        ],
    }


@dataclass
class Published:
    """What the emulated bucket holds: frame keys by channel, in time order."""

    bucket: str
    keys: dict[int, list[str]]
    sizes: dict[str, int]

    @property
    def uris(self) -> dict[int, list[str]]:
        return {w: [f"s3://{self.bucket}/{k}" for k in keys] for w, keys in self.keys.items()}


def index_key(wavelength: int, year: int) -> str:
    return f"{REGISTRY_PREFIX}{dataset_id(wavelength)}_{year}.csv"


def publish(s3, series: LagFrames, *, bucket: str = BUCKET, index_header: str = SPEC_HEADER) -> Published:
    """Upload ``series`` to ``s3`` (a boto3 client) laid out as HelioCloud publishes AIA with CloudCatalog."""
    s3.create_bucket(Bucket=bucket, ACL="public-read")
    frames = sorted(series.frames, key=lambda f: (f.wavelength, f.when))
    keys: dict[int, list[str]] = {}
    sizes: dict[str, int] = {}
    rows: dict[tuple[int, int], list[str]] = {}
    for i, frame in enumerate(frames):
        key = frame_key(frame)
        body = level1_bytes(frame)
        s3.put_object(Bucket=bucket, Key=key, Body=body, ACL="public-read")
        keys.setdefault(frame.wavelength, []).append(key)
        sizes[key] = len(body)
        later = frames[i + 1] if i + 1 < len(frames) and frames[i + 1].wavelength == frame.wavelength else None
        stop = later.when if later else frame.when
        rows.setdefault((frame.wavelength, frame.when.year), []).append(
            f"{_isoz(frame.when)},{_isoz(stop)},s3://{bucket}/{key},{len(body)}")
    for (wavelength, year), lines in rows.items():
        body = index_header + "\n" + "\n".join(lines) + "\n"
        s3.put_object(Bucket=bucket, Key=index_key(wavelength, year), Body=body.encode(), ACL="public-read")
    catalog = catalog_json(bucket, sorted(keys), datetime(2010, 5, 13), datetime(2021, 12, 31, 23, 59, 59))
    s3.put_object(Bucket=bucket, Key="catalog.json", Body=json.dumps(catalog).encode(), ACL="public-read")
    return Published(bucket, keys, sizes)


#: Environment of a reader with no AWS credentials at all (and no instance metadata to ask).
NO_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                  "AWS_PROFILE", "AWS_DEFAULT_PROFILE")


@contextmanager
def anonymous_reader_env(monkeypatch: pytest.MonkeyPatch, endpoint: str, home) -> Iterator[None]:
    """Point boto3/s3fs at ``endpoint`` with no credentials anywhere: only anonymous reads can work."""
    import fsspec

    for name in NO_CREDENTIALS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    fsspec.filesystem("s3").clear_instance_cache()
    try:
        yield
    finally:
        fsspec.filesystem("s3").clear_instance_cache()
