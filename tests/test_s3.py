"""Reading images from S3 (moto's S3 server on loopback; s3fs talks HTTP to it)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("s3fs")
boto3 = pytest.importorskip("boto3")
from moto.server import ThreadedMotoServer  # noqa: E402

from skysift.io.fits import Sections, inspect_image, read_image  # noqa: E402
from skysift.io.storage import list_fits  # noqa: E402


@pytest.fixture(scope="module")
def s3_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint, monkeypatch, m13_files):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    import fsspec

    fsspec.filesystem("s3").clear_instance_cache()
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="raw")
    s3.upload_file(str(m13_files["rice"]), "raw", "night1/m13 rice.fits.fz")
    s3.upload_file(str(m13_files["plain"]), "raw", "night1/m13.fits")
    return s3


def test_s3_images_read_like_local_ones(bucket, m13_files):
    remote = read_image("s3://raw/night1/m13 rice.fits.fz")
    local = read_image(str(m13_files["rice"]))
    np.testing.assert_array_equal(remote.data, local.data)
    assert remote.info.content_hash.startswith("etag:")
    assert remote.info.image_id != local.info.image_id  # another location is another image


def test_s3_header_inspection_and_listing(bucket):
    info = inspect_image("s3://raw/night1/m13.fits")
    assert (info.nx, info.ny, info.wcs_kind) == (300, 300, "celestial")
    assert list_fits("s3://raw/night1") == ["s3://raw/night1/m13 rice.fits.fz", "s3://raw/night1/m13.fits"]


def test_s3_sections_give_the_same_pixels_as_local_reads(bucket, m13_files):
    local = read_image(str(m13_files["plain"]))
    with Sections("s3://raw/night1/m13.fits") as image, Sections("s3://raw/night1/m13 rice.fits.fz") as packed:
        for y0, y1, x0, x1 in [(10, 60, 5, 45), (250, 300, 0, 300)]:
            np.testing.assert_array_equal(image.read(y0, y1, x0, x1)[0], local.data[y0:y1, x0:x1])
            np.testing.assert_array_equal(packed.read(y0, y1, x0, x1)[0], read_image(str(m13_files["rice"])).data[y0:y1, x0:x1])


def test_a_patch_of_an_s3_image_is_one_ranged_read(bucket, tmp_path, monkeypatch):
    import s3fs
    from astropy.io import fits

    path = tmp_path / "big.fits"
    fits.PrimaryHDU(np.random.default_rng(0).normal(size=(2048, 2048)).astype(np.float32)).writeto(path)
    bucket.upload_file(str(path), "raw", "big.fits")
    fetched = []
    fetch = s3fs.core.S3File._fetch_range
    monkeypatch.setattr(s3fs.core.S3File, "_fetch_range", lambda self, start, end: fetched.append(end - start) or fetch(self, start, end))
    with Sections("s3://raw/big.fits") as image:
        fetched.clear()  # the headers are read on opening
        data, _ = image.read(1000, 1256, 1000, 1256)
    assert data.shape == (256, 256)
    assert len(fetched) == 1 and sum(fetched) < path.stat().st_size / 6  # one GET of the 256-row band


def test_gzipped_files_read_from_s3_exactly_as_from_disk(bucket, m13_files, tmp_path):
    """The Inspect Lambda and the workers read .fits.gz from S3 (they quarantined it as 'truncated')."""
    import gzip

    local = tmp_path / "m13.fits.gz"
    local.write_bytes(gzip.compress(m13_files["plain"].read_bytes()))
    bucket.upload_file(str(local), "raw", "night2/m13.fits.gz")
    remote_info, local_info = inspect_image("s3://raw/night2/m13.fits.gz"), inspect_image(str(local))
    assert remote_info.model_dump(exclude={"uri", "image_id", "content_hash"}) == \
        local_info.model_dump(exclude={"uri", "image_id", "content_hash"})
    assert remote_info.wcs_kind == "celestial"
    np.testing.assert_array_equal(read_image("s3://raw/night2/m13.fits.gz").data, read_image(str(local)).data)
    with Sections("s3://raw/night2/m13.fits.gz", gzip_in_memory=False) as streamed:
        np.testing.assert_array_equal(streamed.read(100, 140, 20, 60)[0], read_image(str(local)).data[100:140, 20:60])


def test_a_truncated_gzip_upload_gets_the_same_reason_from_s3_as_from_disk(bucket, m13_files, tmp_path):
    import gzip

    from skysift.errors import TruncatedFile

    local = tmp_path / "cut.fits.gz"
    local.write_bytes(gzip.compress(m13_files["plain"].read_bytes())[:-20000])
    bucket.upload_file(str(local), "raw", "night2/cut.fits.gz")
    for uri in (str(local), "s3://raw/night2/cut.fits.gz"):
        with pytest.raises(TruncatedFile):
            read_image(uri)
