"""Batch worker: ``python -m skysift.timelag.worker REQUEST.json`` with exit codes Batch can act on."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from astropy.io import fits
from solar_series import lag_request

from skysift.timelag import worker
from skysift.timelag.errors import InvalidRequest
from skysift.timelag.request import TimeLagRequest


def test_worker_runs_a_request_file_and_writes_a_summary(small_lag_series, local_cluster, tmp_path, capsys, monkeypatch):
    request = lag_request(small_lag_series, tmp_path / "out" / "lag.fits", scheduler=local_cluster.scheduler.address)
    del request["index"]  # the job definition's environment supplies it
    monkeypatch.setenv(worker.INDEX_ENV, str(small_lag_series.home))
    (tmp_path / "request.json").write_text(json.dumps(request))

    assert worker.main([str(tmp_path / "request.json")]) == worker.EXIT_OK

    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    stored = json.loads((tmp_path / "out" / "lag.fits.json").read_text())
    assert printed == stored and printed["status"] == "ok" and printed["frames"] == [12, 12]
    assert fits.getdata(tmp_path / "out" / "lag.fits").shape == (40, 40)
    assert (tmp_path / "out" / "lag.png").exists()


def test_missing_series_is_a_permanent_failure(small_lag_series, tmp_path, capsys):
    request = lag_request(small_lag_series, tmp_path / "lag.fits", channel_a=335)
    (tmp_path / "request.json").write_text(json.dumps(request))

    assert worker.main([str(tmp_path / "request.json")]) == worker.EXIT_PERMANENT

    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["status"] == "failed" and record["reason"] == "series_not_found"
    assert not (tmp_path / "lag.fits").exists()


def test_malformed_request_names_the_bad_fields(tmp_path, capsys):
    (tmp_path / "request.json").write_text(json.dumps({"channel_a": -1, "start": "yesterday"}))
    assert worker.main([str(tmp_path / "request.json")]) == worker.EXIT_PERMANENT
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["reason"] == "invalid_timelag_request"
    assert "channel_a" in record["message"] and "output" in record["message"]


def test_module_entrypoint_prints_usage_without_arguments():
    done = subprocess.run([sys.executable, "-m", "skysift.timelag.worker"], capture_output=True, text=True, check=False)
    assert done.returncode == worker.EXIT_PERMANENT and "usage" in done.stderr


def test_request_png_defaults_next_to_the_fits():
    base = {"channel_a": 193, "channel_b": 171, "start": "2011-02-15T00:00:00", "end": "2011-02-15T12:00:00",
            "center_arcsec": [0, 0], "fov_arcsec": [100, 100], "cadence_s": 240, "max_lag_s": 3600, "index": "x"}
    assert TimeLagRequest.parse({**base, "output": "s3://b/run/lag.fits"}).png_output == "s3://b/run/lag.png"
    assert TimeLagRequest.parse({**base, "output": "out/lag.fits.gz"}).png_output == "out/lag.png"


def test_a_request_naming_its_frames_needs_no_index_and_takes_none_from_the_environment(
        small_lag_series, tmp_path, capsys, monkeypatch):
    request = lag_request(small_lag_series, tmp_path / "out" / "lag.fits", scheduler="sync",
                          frames=[str(p) for p in small_lag_series.paths_a + small_lag_series.paths_b])
    del request["index"]
    monkeypatch.setenv(worker.INDEX_ENV, str(tmp_path / "no-such-home"))  # would fail if it were used
    (tmp_path / "request.json").write_text(json.dumps(request))

    assert worker.main([str(tmp_path / "request.json")]) == worker.EXIT_OK

    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["frames"] == [12, 12] and printed["cluster"] == {"kind": "sync"}


def test_a_request_gives_frames_or_an_index_and_a_scheduler_or_a_gateway():
    base = {"channel_a": 193, "channel_b": 171, "start": "2011-02-15T00:00Z", "end": "2011-02-15T12:00+00:00",
            "center_arcsec": [0, 0], "fov_arcsec": [100, 100], "cadence_s": 240, "max_lag_s": 3600, "output": "x.fits"}
    for extra, message in [({}, "give an index to search"), ({"index": "h", "frames": ["a.fits"]}, "not both"),
                           ({"frames": []}, "frames is empty"),
                           ({"index": "h", "scheduler": "tcp://s:8786", "gateway": "http://g"}, "not both"),
                           ({"index": "h", "cluster_options": {"image": "x"}}, "only apply to a dask-gateway")]:
        with pytest.raises(InvalidRequest, match=message):
            TimeLagRequest.parse({**base, **extra})
    request = TimeLagRequest.parse({**base, "frames": ["s3://b/a.fits"], "anon": True})
    assert request.storage_options == {"anon": True} and request.index is None
