"""``skysift timelag`` command: flag parsing, a full run against a real scheduler, clear errors."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime

import click
import pytest
from astropy.io import fits
from click.testing import CliRunner

from skysift.cli.timelag import (
    parse_duration_s,
    parse_pair_arcsec,
    parse_time_utc,
    quiet_dask_logging,
    timelag_command,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("-125,250", (-125.0, 250.0)), ("-125, 250 arcsec", (-125.0, 250.0)), ("-2,4arcmin", (-120.0, 240.0)),
     ("0.1,0.2 deg", (360.0, 720.0))],
)
def test_center_and_fov_accept_arcsec_or_an_angle_unit(text, expected):
    assert parse_pair_arcsec(text) == pytest.approx(expected)


@pytest.mark.parametrize(("text", "seconds"), [("4min", 240.0), ("6h", 21600.0), ("12 s", 12.0), ("90", 90.0)])
def test_durations_accept_units(text, seconds):
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["-125", "a,b", "1,2 kg"])
def test_bad_pairs_are_rejected(text):
    with pytest.raises(click.BadParameter):
        parse_pair_arcsec(text)


def test_timelag_command_writes_fits_and_png_on_the_given_scheduler(small_lag_series, local_cluster, tmp_path):
    out = tmp_path / "lag.fits"
    args = [
        "--channel-a", "193", "--channel-b", "171",
        "--start", small_lag_series.start.strftime("%Y-%m-%dT%H:%M:%S"),
        "--end", small_lag_series.end.strftime("%Y-%m-%dT%H:%M:%S"),
        "--center", "-125,250", "--fov", "160,160", "--cadence", "4min", "--max-lag", "40min",
        "--instrument", "AIA", "--index", str(small_lag_series.home),
        "--scheduler", local_cluster.scheduler.address, "-o", str(out),
    ]
    result = CliRunner().invoke(timelag_command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    assert summary["frames"] == [12, 12] and summary["shape"] == [40, 40]
    assert (tmp_path / "lag.png").stat().st_size > 10_000
    header = fits.getheader(out)
    assert header["CADENCE"] == 240.0 and header["MAXLAG"] == 2400.0 and header["BUNIT"] == "s"


def test_inconsistent_flags_exit_with_the_reason(small_lag_series, tmp_path):
    args = ["--channel-a", "193", "--channel-b", "171", "--start", "2011-02-15T02:00", "--end", "2011-02-15T01:00",
            "--center", "0,0", "--index", str(small_lag_series.home), "-o", str(tmp_path / "x.fits")]
    result = CliRunner().invoke(timelag_command, args)
    assert result.exit_code == 2  # fix the command
    assert "error (invalid_timelag_request): " in result.output and "must be after start" in result.output


def test_unreachable_scheduler_is_reported(small_lag_series, tmp_path):
    args = ["--channel-a", "193", "--channel-b", "171", "--start", "2011-02-15T00:00", "--end", "2011-02-15T01:00",
            "--center", "0,0", "--index", str(small_lag_series.home), "-o", str(tmp_path / "x.fits"),
            "--scheduler", "tcp://127.0.0.1:9", "--scheduler-timeout", "2s"]
    result = CliRunner().invoke(timelag_command, args)
    assert result.exit_code == 1  # transient: running again may work
    assert "error (scheduler_unavailable): " in result.output


def test_threads_scheduler_runs_in_process_with_a_progress_bar(small_lag_series, tmp_path):
    args = ["--channel-a", "193", "--channel-b", "171",
            "--start", small_lag_series.start.strftime("%Y-%m-%dT%H:%M:%S"),
            "--end", small_lag_series.end.strftime("%Y-%m-%dT%H:%M:%S"),
            "--center", "-125,250", "--fov", "80,80", "--cadence", "4min", "--max-lag", "20min",
            "--index", str(small_lag_series.home), "--scheduler", "threads", "-o", str(tmp_path / "t.fits")]
    result = CliRunner(mix_stderr=False).invoke(timelag_command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Completed" in result.stderr  # dask.diagnostics.ProgressBar
    assert json.loads(result.stdout)["shape"] == [20, 20]


@pytest.mark.parametrize("text", ["2011-02-15T00:00Z", "2011-02-15T01:00+01:00", "2011-02-14T19:00-05:00",
                                  "2011-02-15 00:00", "2011-02-15T00:00:00", "2011-02-15"])
def test_times_accept_iso_8601_with_z_and_offsets(text):
    assert parse_time_utc(text) == datetime(2011, 2, 15, tzinfo=UTC)


def test_a_time_that_is_not_iso_8601_is_refused_with_examples():
    with pytest.raises(click.BadParameter, match="2011-02-15T00:00Z"):
        parse_time_utc("15/02/2011")


def _cli_args(series, out, *extra) -> list[str]:
    return ["--channel-a", "193", "--channel-b", "171",
            "--start", series.start.strftime("%Y-%m-%dT%H:%M:%SZ"), "--end", series.end.isoformat(),
            "--center", "-125,250", "--fov", "160,160", "--cadence", "4min", "--max-lag", "40min",
            "-o", str(out), "--no-progress", *extra]


def test_skysift_home_is_the_default_index_and_a_run_prints_no_dask_chatter(small_lag_series, tmp_path):
    # a real `skysift` process: the group's --home, its logging set-up, a LocalCluster started and stopped
    env = {k: v for k, v in os.environ.items() if k != "SKYSIFT_HOME"}
    out = tmp_path / "lag.fits"
    result = subprocess.run(
        [sys.executable, "-m", "skysift.cli.main", "--home", str(small_lag_series.home), "timelag",
         *_cli_args(small_lag_series, out, "--workers", "1")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["frames"] == [12, 12]  # found in --home, not in ./skysift-data
    assert "distributed" not in result.stderr and "INFO" not in result.stderr
    assert len(result.stderr.splitlines()) <= 1  # at most skysift's own warning about the lag range


def test_verbose_shows_the_dask_logs_again():
    logger = logging.getLogger("distributed")
    before = logger.level
    try:
        quiet_dask_logging(0)
        assert logger.getEffectiveLevel() == logging.WARNING
        quiet_dask_logging(1)
        assert logger.getEffectiveLevel() == logging.INFO
    finally:
        logger.setLevel(before)


@pytest.mark.parametrize("center", ["2000,2000", "600,-600"])
def test_a_center_off_the_disk_or_outside_the_frames_is_a_one_line_error(small_lag_series, tmp_path, center):
    args = _cli_args(small_lag_series, tmp_path / "lag.fits", "--index", str(small_lag_series.home),
                     "--scheduler", "threads")
    args[args.index("--center") + 1] = center
    result = CliRunner(mix_stderr=False).invoke(timelag_command, args)
    assert result.exit_code == 2  # fix the command
    assert result.stderr.startswith("error (cutout_outside_field): ") and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "lag.fits").exists() and not (tmp_path / "lag.png").exists()


@pytest.mark.parametrize(("extra", "message"), [
    (["--scheduler", "threads", "--gateway", "http://127.0.0.1:9"], "either --scheduler or --gateway"),
    (["--frames", "a.fits", "--index", "somewhere"], "either --frames or --index"),
    (["--gateway-option", "worker_cores=2"], "--gateway-option needs --gateway"),
])
def test_conflicting_sources_and_clusters_are_usage_errors(small_lag_series, tmp_path, extra, message):
    result = CliRunner(mix_stderr=False).invoke(timelag_command, _cli_args(small_lag_series, tmp_path / "x.fits", *extra))
    assert result.exit_code == 2 and message in result.stderr
