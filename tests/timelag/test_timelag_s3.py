"""The Batch path on S3: frames, request and results in buckets (moto's S3 server; s3fs over HTTP)."""

from __future__ import annotations

import io
import json

import dask
import numpy as np
import pytest
from astropy.io import fits
from solar_series import lag_request, write_images_index

pytest.importorskip("s3fs")
boto3 = pytest.importorskip("boto3")
from moto.server import ThreadedMotoServer  # noqa: E402

from skysift.timelag import worker  # noqa: E402
from skysift.timelag.index import LocalIndex  # noqa: E402
from skysift.timelag.pipeline import plan_request  # noqa: E402
from skysift.timelag.request import TimeLagRequest  # noqa: E402


@pytest.fixture
def s3(monkeypatch):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for key, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    import fsspec

    fsspec.filesystem("s3").clear_instance_cache()
    client = boto3.client("s3", endpoint_url=endpoint)
    for bucket in ("solar-raw", "jobs", "results"):
        client.create_bucket(Bucket=bucket)
    yield client
    fsspec.filesystem("s3").clear_instance_cache()
    server.stop()


def test_worker_reads_frames_and_request_from_s3_and_writes_results_there(small_lag_series, s3, tmp_path, capsys):
    uris = []
    for path in small_lag_series.paths_a + small_lag_series.paths_b:
        s3.upload_file(str(path), "solar-raw", f"aia/{path.name}")
        uris.append(f"s3://solar-raw/aia/{path.name}")
    home = tmp_path / "home"
    write_images_index(home, uris)  # the index now points at S3 objects
    # dask's threaded scheduler: the worker threads read S3 through s3fs like cluster workers would
    request = lag_request(small_lag_series, "s3://results/run-1/lag.fits", index=str(home), scheduler="threads")
    s3.put_object(Bucket="jobs", Key="run-1.json", Body=json.dumps(request).encode())

    assert worker.main(["s3://jobs/run-1.json"]) == worker.EXIT_OK

    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="results")["Contents"]}
    assert keys == {"run-1/lag.fits", "run-1/lag.png", "run-1/lag.fits.json"}
    remote = fits.getdata(io.BytesIO(s3.get_object(Bucket="results", Key="run-1/lag.fits")["Body"].read()))
    local = TimeLagRequest.parse(lag_request(small_lag_series, "unused.fits"))
    with dask.config.set(scheduler="sync"):
        expected = plan_request(local, LocalIndex(small_lag_series.home)).lag_s.compute()
    np.testing.assert_array_equal(remote, expected)
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["output"] == "s3://results/run-1/lag.fits" and summary["request"] == "s3://jobs/run-1.json"
