"""Local runs on one home: concurrent runs, earlier images arriving late, kill -9, a crash in the alert log."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from astropy.io import fits
from click.testing import CliRunner

from skysift.alerts.log import LogPublisher
from skysift.analysis.sample import TRANSIENT_MAG, make_sample
from skysift.catalog import homelock
from skysift.catalog.query import LocalCatalog
from skysift.cli.main import cli
from skysift.pipeline.survey import run_local
from skysift.settings import Settings

SKYSIFT = [sys.executable, "-m", "skysift.cli.main"]
HIGH_SNR = 100.0  # high_snr alerts too, so that more than the transient's alert is compared
PATIENCE_S = 240.0


def _skysift(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*SKYSIFT, *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "COLUMNS": "200"})


def _start(*args: str, cwd: Path, name: str, new_session: bool = False) -> tuple[subprocess.Popen, Path]:
    """A ``skysift`` command started in the background; its stderr goes to ``cwd/name.err``."""
    err = cwd / f"{name}.err"
    with open(cwd / f"{name}.out", "w") as out, open(err, "w") as errors:
        process = subprocess.Popen([*SKYSIFT, *args], cwd=cwd, stdout=out, stderr=errors,
                                   env={**os.environ, "COLUMNS": "200"}, start_new_session=new_session)
    return process, err


def _until(condition, what: str, process: subprocess.Popen | None = None) -> None:
    """Wait (polling) until ``condition()``; fail if ``process`` ends first or time runs out."""
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        if process is not None and process.poll() is not None:
            pytest.fail(f"the process ended (status {process.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.02)


def _outcome(home: Path) -> dict:
    """What a user relies on after runs: rows per table, the ids in them, the alerts sent."""
    catalog = LocalCatalog(home)
    counts = {t: int(catalog.sql(f"SELECT COUNT(*) AS n FROM {t}")["n"][0]) for t in ("images", "sources", "alerts")}
    return {
        "counts": counts,
        "image_ids": sorted(catalog.sql("SELECT image_id FROM images")["image_id"]),
        "source_ids": sorted(catalog.sql("SELECT source_id FROM sources")["source_id"]),
        "alert_rows": sorted(catalog.sql("SELECT alert_id FROM alerts")["alert_id"]),
        "alerts_sent": sorted(a["alert_id"] for a in LogPublisher(home).read()),
    }


def _new_sources(home: Path) -> list[dict]:
    return [a for a in LogPublisher(home).read() if a["rule"] == "new_source"]


@pytest.fixture(scope="module")
def survey(tmp_path_factory) -> Path:
    """The sample survey (256 px), its two nights in two folders: sky/night1 (no transient), sky/night2."""
    root = tmp_path_factory.mktemp("survey")
    paths = make_sample(root / "rendered", size=256, seed=7)
    for night, files in (("night1", paths[:4]), ("night2", paths[4:])):
        (root / "sky" / night).mkdir(parents=True)
        for path in files:
            shutil.move(path, root / "sky" / night / path.name)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("blocked_first", ["night2", "both"])
def test_two_runs_started_at_once_on_one_home_leave_what_one_run_leaves(survey, tmp_path, blocked_first):
    sequential = tmp_path / "sequential"
    run_local([str(p) for p in sorted((survey / "sky").rglob("*.fits"))],
              Settings.load(home=sequential, alerts={"high_snr": HIGH_SNR}), workers=2)
    expected = _outcome(sequential)
    assert len(expected["alerts_sent"]) > 2 and len(_new_sources(sequential)) == 1

    home = tmp_path / "home"
    flags = ("--min-snr-alert", str(HIGH_SNR), "-j", "2")
    targets = {"night2": survey / "sky" / "night2", "both": survey / "sky"}  # overlapping: night 2 is in both
    order = [blocked_first, *(name for name in targets if name != blocked_first)]
    runs = {}
    with homelock.home_lock(home):  # both start while the home is taken, so both contend when it is let go
        for name in order:  # in practice the one blocked first goes first: each parameter gives one order
            runs[name] = _start("--home", str(home), "run", str(targets[name]), *flags, cwd=tmp_path, name=name)
            process, err = runs[name]
            _until(lambda err=err: "waiting for another skysift run on" in err.read_text(), "the wait message", process)
    for process, err in runs.values():
        assert process.wait(timeout=PATIENCE_S) == 0, err.read_text()

    for _, err in runs.values():
        waiting = [line for line in err.read_text().splitlines() if "waiting for" in line]
        assert waiting == [f"waiting for another skysift run on {home} (pid {os.getpid()})..."]
    assert _outcome(home) == expected  # whichever ran first: the transient's alert is in both
    assert expected["alert_rows"] == expected["alerts_sent"]


def test_an_earlier_night_arriving_after_the_later_one_raises_the_transient_alert(survey, tmp_path):
    p1_night1, p1_night2 = survey / "sky" / "night1" / "field_001.fits", survey / "sky" / "night2" / "field_005.fits"
    settings = Settings.load(home=tmp_path / "home")

    later_first = run_local([str(p1_night2)], settings)
    assert later_first.n_alerts == 0 and _new_sources(settings.home) == []  # nothing earlier to compare with
    earlier_late = run_local([str(p1_night1)], settings)

    [alert] = _new_sources(settings.home)
    assert alert["image_uri"] == str(p1_night2) and alert["mag_ab"] == pytest.approx(TRANSIENT_MAG, abs=0.15)
    assert earlier_late.reopened_alerts == 1 and earlier_late.n_alerts == 1
    assert list(LocalCatalog(settings.home).sql("SELECT alert_id FROM alerts")["alert_id"]) == [alert["alert_id"]]
    again = run_local([str(p1_night1), str(p1_night2)], settings)  # nothing left to decide
    assert again.n_alerts == 0 and len(LogPublisher(settings.home).read()) == 1

    in_order = Settings.load(home=tmp_path / "in_order")
    run_local([str(p1_night1), str(p1_night2)], in_order)
    assert [a["alert_id"] for a in _new_sources(in_order.home)] == [alert["alert_id"]]


def test_an_alert_already_sent_stays_sent_when_an_earlier_image_makes_it_wrong(survey, tmp_path):
    p1_night1, p1_night2 = survey / "sky" / "night1" / "field_001.fits", survey / "sky" / "night2" / "field_005.fits"
    settings = Settings.load(home=tmp_path / "home")
    run_local([str(p1_night1), str(p1_night2)], settings)
    [sent] = _new_sources(settings.home)
    # the same pointing with the transient already there, observed a week before both, arrives last
    week_before = tmp_path / "field_005_earlier.fits"
    with fits.open(p1_night2) as hdul:
        hdul[0].header["DATE-OBS"] = "2026-03-07T03:05:00"
        hdul.writeto(week_before)

    late = run_local([str(week_before)], settings)

    assert late.n_alerts == 0 and late.reopened_alerts == 0  # the decisions re-opened raise nothing new
    assert [a["alert_id"] for a in _new_sources(settings.home)] == [sent["alert_id"]]  # sent cannot be unsent
    assert list(LocalCatalog(settings.home).sql("SELECT alert_id FROM alerts")["alert_id"]) == [sent["alert_id"]]


@pytest.fixture
def twelve_images(make_sky, tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(12):
        make_sky(f"images/img_{i:02d}.fits", size=256, n_stars=40, n_galaxies=8, seed=100 + i, center_ra=150.0 + 0.2 * i,
                 header={"DATE-OBS": f"2026-02-{i + 1:02d}T01:00:00"})
    return folder


@pytest.mark.slow
def test_a_run_killed_mid_way_leaves_readable_tables_and_the_next_run_finishes_it(twelve_images, tmp_path):
    flags = ("--min-snr-alert", "50", "-j", "2")
    reference = tmp_path / "reference"
    run_local([str(p) for p in sorted(twelve_images.glob("*.fits"))], Settings.load(home=reference, alerts={"high_snr": 50.0}),
              workers=2)
    home = tmp_path / "home"

    def images_files() -> list[Path]:
        return list(home.glob("tables/images/*/*/*/*.parquet"))

    run, _ = _start("--home", str(home), "run", str(twelve_images), *flags, cwd=tmp_path, name="killed", new_session=True)
    _until(lambda: len(images_files()) >= 2, "two images written", run)
    os.killpg(run.pid, signal.SIGKILL)  # the run and its workers, wherever they are
    assert run.wait(timeout=60) == -signal.SIGKILL
    assert len(images_files()) < 12

    orphan = images_files()[0].parent / ".0123456789abcdef.deadbeef.tmp"  # as a writer killed mid-file leaves
    orphan.write_bytes(b"PAR1 half a file")
    readable = _skysift("--home", str(home), "query", "SELECT COUNT(*) AS n FROM images", "--format", "csv", cwd=tmp_path)
    assert readable.returncode == 0, readable.stderr
    finished = int(readable.stdout.split()[-1])  # the images the killed run committed
    assert 2 <= finished < 12

    resumed = _skysift("--home", str(home), "run", str(twelve_images), *flags, cwd=tmp_path)

    assert resumed.returncode == 0, resumed.stderr
    assert f"{finished} image(s) already done with these settings were skipped" in " ".join(resumed.stdout.split())
    report = json.loads(Path(resumed.stdout.split("run report: ")[-1].split()[0]).read_text())
    assert (report["skipped_already_done"], report["images"]) == (finished, 12 - finished)  # none measured twice
    assert not orphan.exists() and not list(home.glob("tables/**/.*.tmp")) and not list(home.glob(".running-*"))
    expected = _outcome(reference)
    assert expected["counts"]["alerts"] > 3
    assert _outcome(home) == expected


def test_a_crash_between_logging_an_alert_and_marking_it_sent_shows_it_once(survey, tmp_path, monkeypatch):
    files = [str(p) for p in sorted((survey / "sky").rglob("*.fits"))]
    reference = Settings.load(home=tmp_path / "reference", alerts={"high_snr": HIGH_SNR})
    run_local(files, reference)
    settings = Settings.load(home=tmp_path / "home", alerts={"high_snr": HIGH_SNR})

    def crash(self, alert_id):  # the process dies after the log line, before the marker
        raise RuntimeError("killed")

    with monkeypatch.context() as patched:
        patched.setattr(LogPublisher, "_mark_sent", crash)
        crashed = run_local(files, settings)
    assert crashed.alert_failures and not list((settings.home / "alerts-sent").iterdir())
    logged = (settings.home / "alerts.jsonl").read_text().splitlines()
    resumed = run_local(files, settings)

    assert resumed.alert_failures == []
    lines = (settings.home / "alerts.jsonl").read_text().splitlines()
    assert len(lines) == 2 * len(logged)  # every alert logged twice: once per attempt
    shown = CliRunner().invoke(cli, ["--home", str(settings.home), "alerts", "--json", "-n", "1000"])
    assert shown.exit_code == 0, shown.output
    ids = [json.loads(line)["alert_id"] for line in shown.output.splitlines()]
    assert sorted(ids) == _outcome(reference.home)["alerts_sent"]  # each exactly once, none lost
    assert _outcome(settings.home) == _outcome(reference.home)


def test_sent_markers_one_per_publish_and_the_older_ones_per_alert_all_count(tmp_path):
    """A publish writes one marker listing its alerts (not a file per alert); a new publisher
    (the next run) reads it, and the per-alert markers of homes written before still count."""
    publisher = LogPublisher(tmp_path)
    assert publisher.publish([{"alert_id": f"a{i}", "rule": "high_snr"} for i in range(5)]) == [f"a{i}" for i in range(5)]
    assert len(list((tmp_path / "alerts-sent").iterdir())) == 1
    (tmp_path / "alerts-sent" / "old1").touch()  # a marker as earlier versions wrote them
    (tmp_path / "alerts-sent" / ".x.sent.123.tmp").write_text("b1\n")  # a marker cut short by a crash
    again = LogPublisher(tmp_path)
    assert all(again.was_sent(f"a{i}") for i in range(5)) and again.was_sent("old1") and not again.was_sent("b1")
    assert again.publish([{"alert_id": "a3", "rule": "high_snr"}, {"alert_id": "old1", "rule": "high_snr"},
                          {"alert_id": "b1", "rule": "high_snr"}]) == ["b1"]
    assert again.was_sent("b1") and LogPublisher(tmp_path).was_sent("b1")
    assert sorted(a["alert_id"] for a in again.read()) == ["a0", "a1", "a2", "a3", "a4", "b1"]


def test_the_alert_log_survives_a_line_cut_short(tmp_path):
    publisher = LogPublisher(tmp_path)
    publisher.publish([{"alert_id": "a1", "rule": "high_snr"}])
    with open(publisher.log_path, "a") as log:
        log.write('{"alert_id": "a2", "ru')  # killed mid-write: no marker, half a line
    assert publisher.publish([{"alert_id": "a2", "rule": "high_snr"}, {"alert_id": "a1", "rule": "high_snr"}]) == ["a2"]
    assert [a["alert_id"] for a in publisher.read()] == ["a2", "a1"]


def test_a_second_writer_waits_for_the_first_and_says_for_whom(tmp_path):
    held, release, entered, messages = threading.Event(), threading.Event(), threading.Event(), []

    def first() -> None:
        with homelock.home_lock(tmp_path), homelock.home_lock(tmp_path):  # a holder may take it again
            held.set()
            release.wait(PATIENCE_S)

    def second() -> None:
        with homelock.home_lock(tmp_path, on_wait=messages.append):
            entered.set()

    holder = threading.Thread(target=first)
    holder.start()
    assert held.wait(PATIENCE_S)
    waiter = threading.Thread(target=second)
    waiter.start()
    _until(lambda: messages, "the wait message")
    assert not entered.is_set()
    assert messages == [f"waiting for another skysift run on {tmp_path} (pid {os.getpid()})..."]
    release.set()
    assert entered.wait(PATIENCE_S)
    holder.join()
    waiter.join()


@pytest.mark.parametrize(("args", "locks"), [
    (["compact"], True), (["check", "--repair"], True), (["check"], False), (["alerts"], False),
])
def test_commands_that_write_the_home_take_its_lock(args, locks, tmp_path, monkeypatch):
    taken = []

    @contextmanager
    def recording_lock(home, *, on_wait=None):
        taken.append(Path(home))
        yield

    monkeypatch.setattr(homelock, "home_lock", recording_lock)
    result = CliRunner().invoke(cli, ["--home", str(tmp_path / "home"), *args])
    assert result.exit_code == 0, result.output
    assert taken == ([tmp_path / "home"] if locks else [])
