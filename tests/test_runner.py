"""Bulk runs: resume after an interruption without redoing or duplicating work; a report."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from skysift.catalog.query import LocalCatalog
from skysift.cli.main import parse_bytes
from skysift.pipeline.survey import run_local
from skysift.settings import Settings


@pytest.fixture
def images(make_sky):
    paths = [make_sky(f"img_{i}.fits", seed=i, size=256, n_stars=40, n_galaxies=5)[0] for i in range(5)]
    bad = paths[0].parent / "img_bad.fits"
    bad.write_bytes(b"not a fits file at all" * 100)
    return [str(p) for p in [*paths, bad]]


def test_interrupted_run_resumes_without_redoing_or_duplicating(images, tmp_path):
    settings = Settings.load(home=tmp_path / "home")
    seen = []

    def interrupt_after_two(summary):
        seen.append(summary)
        if len(seen) == 2:
            raise KeyboardInterrupt

    first = run_local(images, settings, on_image=interrupt_after_two)
    assert first.interrupted and len(first.summaries) == 2 and first.exit_code == 130
    assert LocalCatalog(settings.home).sql("SELECT COUNT(*) n FROM images")["n"][0] == 2
    second = run_local(images, settings, workers=2)
    assert not second.interrupted and second.skipped == 2 and len(second.summaries) == 4
    catalog = LocalCatalog(settings.home)
    assert catalog.sql("SELECT COUNT(*) n, COUNT(DISTINCT image_id) d FROM images").iloc[0].tolist() == [6, 6]
    assert catalog.sql("SELECT COUNT(*) n, COUNT(DISTINCT source_id) d FROM sources").pipe(lambda f: f["n"][0] == f["d"][0])
    third = run_local(images, settings)
    assert third.skipped == 5 and [s.status for s in third.summaries] == ["failed"]  # bad files are retried


def test_resume_fingerprints_only_files_already_in_the_table(images, tmp_path, monkeypatch):
    from skysift.io import storage
    from skysift.pipeline import survey as runner

    settings = Settings.load(home=tmp_path / "home")
    run_local(images[:3], settings)
    Path(images[2]).write_bytes(Path(images[3]).read_bytes())  # same name, new content
    hashed = []
    fingerprint = storage.fingerprint
    monkeypatch.setattr(storage, "fingerprint", lambda uri, data=None: hashed.append(uri) or fingerprint(uri, data))
    units = [(uri, None) for uri in images]
    todo, done, changed = runner._already_done(units, Path(settings.home), settings.measurement_hash())
    assert sorted(hashed) == sorted(images[:3])  # new files are to do without reading them
    assert [r.uri for r in done] == images[:2] and todo == units[2:] and changed == 0


def test_changed_settings_measure_again_and_the_same_settings_resume(images, tmp_path):
    from click.testing import CliRunner

    from skysift.cli.main import cli

    home, folder = tmp_path / "home", str(Path(images[0]).parent)
    good = sorted(images[:-1])

    def run(*args: str):
        result = CliRunner().invoke(cli, ["--home", str(home), "run", folder, "-j", "1", *args])
        assert result.exit_code == 1, result.output  # the bad file fails every time, and is listed
        rows = LocalCatalog(home).sql("SELECT uri, image_id, n_sources, detection_threshold_sigma, settings_hash "
                                      "FROM images WHERE status = 'ok' ORDER BY uri")
        return result.output, rows

    _, default = run()
    output, strict = run("--threshold", "10")
    assert default["uri"].tolist() == strict["uri"].tolist() == good
    assert strict["image_id"].tolist() == default["image_id"].tolist()  # the same images, rows replaced
    assert set(default["detection_threshold_sigma"]) == {5.0} and set(strict["detection_threshold_sigma"]) == {10.0}
    assert (strict["n_sources"] < default["n_sources"]).all()
    assert strict["settings_hash"].nunique() == 1 and set(strict["settings_hash"]).isdisjoint(default["settings_hash"])
    assert "5 image(s) done before with other measurement settings were measured again" in " ".join(output.split())
    assert LocalCatalog(home).sql("SELECT COUNT(*) n FROM sources")["n"][0] == strict["n_sources"].sum()

    output, same = run("--threshold", "10")
    assert "5 image(s) already done with these settings were skipped" in " ".join(output.split())
    assert same.equals(strict)
    report = json.loads(Path(output.split("run report: ")[-1].split()[0]).read_text())
    assert report["skipped_already_done"] == 5 and report["remeasured_settings"] == 0 and report["images"] == 1


def test_run_report_counts_failures_and_reasons(images, tmp_path):
    report = run_local(images, Settings.load(home=tmp_path / "home"), workers=2)
    written = json.loads(Path(report.report_path).read_text())
    assert written["status"] == {"ok": 5, "failed": 1}
    assert written["failure_reasons"] == {"not_fits": 1}
    assert written["failures"][0]["uri"].endswith("img_bad.fits")
    assert written["seconds_per_image_median"] > 0 and len(written["per_image"]) == 6


@pytest.mark.parametrize(("text", "value"), [("1GiB", 2**30), ("512MB", 512 * 10**6), ("2g", 2 * 10**9), ("1000", 1000)])
def test_memory_sizes_parse(text, value):
    assert parse_bytes(text) == value


def test_bad_memory_size_is_rejected():
    import click

    with pytest.raises(click.BadParameter):
        parse_bytes("lots")


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="read-ahead needs posix_fadvise")
def test_read_ahead_hints_local_files_only_and_never_fails(tmp_path, monkeypatch):
    """A bulk run reads ahead the next image while it measures this one: an existing file gets
    one WILLNEED hint (its descriptor closed again); a missing file raises nothing (the image's
    own read reports it) and a remote object is not even opened (nothing to read ahead)."""
    from skysift.io import storage

    opened, advised, closed = [], [], []
    real_open, real_close = os.open, os.close
    monkeypatch.setattr(os, "open", lambda path, flags, *args: opened.append(str(path)) or real_open(path, flags, *args))
    monkeypatch.setattr(os, "posix_fadvise", lambda *args: advised.append(args))
    monkeypatch.setattr(os, "close", lambda fd: closed.append(fd) or real_close(fd))
    image = tmp_path / "next.fits"
    image.write_bytes(b"SIMPLE  =                    T" + b" " * 2850)

    storage.prefetch(str(image))
    [(fd, offset, length, advice)] = advised
    assert opened == [str(image)] and (offset, length, advice) == (0, 0, os.POSIX_FADV_WILLNEED)  # the whole file
    assert closed == [fd]
    storage.prefetch(str(tmp_path / "missing.fits"))  # raises nothing
    storage.prefetch("s3://bucket/key.fits")
    assert opened == [str(image), str(tmp_path / "missing.fits")] and len(advised) == 1 and len(closed) == 1


def _failing_on(name: str, action):
    """A stand-in for ``skysift.pipeline.survey.process_image`` that runs ``action`` for the file ``name``
    (forked pool workers inherit it) and measures every other file for real."""
    from skysift.pipeline import survey as runner

    real = runner.process_image

    def process(uri, *args, **kwargs):
        if Path(uri).name == name:
            action()
        return real(uri, *args, **kwargs)

    return process


@pytest.mark.parametrize("workers", [1, 2])
def test_an_unexpected_exception_fails_only_its_image_with_a_traceback_digest(images, tmp_path, monkeypatch, workers):
    from skysift.pipeline import image as pipeline

    real = pipeline.measure_image

    def measure(image, *args, **kwargs):
        if image.info.uri.endswith("img_3.fits"):
            raise ValueError("a bug deep in the science")
        return real(image, *args, **kwargs)

    monkeypatch.setattr(pipeline, "measure_image", measure)
    settings = Settings.load(home=tmp_path / "home")

    report = run_local(images, settings, workers=workers)

    by_name = {Path(s.uri).name: s for s in report.summaries}
    assert [n for n, s in sorted(by_name.items()) if s.status == "ok"] == [f"img_{i}.fits" for i in (0, 1, 2, 4)]
    broken = by_name["img_3.fits"]
    assert (broken.status, broken.reason) == ("failed", "internal_error")
    assert broken.message.startswith("ValueError: a bug deep in the science (at ")
    record = json.loads(Path(broken.pointers["quarantine"]).read_text())
    assert record["exception_type"] == "ValueError" and len(record["traceback_digest"]) == 12
    row = LocalCatalog(settings.home).sql("SELECT * FROM images WHERE status = 'failed' AND error_reason = 'internal_error'")
    assert len(row) == 1 and row["band"][0] == "r"  # the header was still read for the row
    assert not report.succeeded and report.exit_code == 1


def test_a_worker_killed_by_the_kernel_fails_only_its_image_and_the_pool_goes_on(images, tmp_path, monkeypatch):
    import signal

    from skysift.pipeline import survey as runner

    monkeypatch.setattr(runner, "process_image", _failing_on("img_2.fits", lambda: os.kill(os.getpid(), signal.SIGKILL)))
    settings = Settings.load(home=tmp_path / "home")

    report = run_local(images, settings, workers=2)

    statuses = {Path(s.uri).name: (s.status, s.reason) for s in report.summaries if s.uri != images[-1]}
    assert statuses == {"img_0.fits": ("ok", None), "img_1.fits": ("ok", None), "img_2.fits": ("failed", "worker_died"),
                        "img_3.fits": ("ok", None), "img_4.fits": ("ok", None)}
    [died] = [s for s in report.summaries if s.reason == "worker_died"]
    assert "killed by SIGKILL" in died.message
    catalog = LocalCatalog(settings.home)
    assert catalog.sql("SELECT COUNT(*) n, COUNT(DISTINCT image_id) d FROM images").iloc[0].tolist() == [6, 6]
    assert catalog.sql("SELECT COUNT(DISTINCT image_id) n FROM sources")["n"][0] == 4
    monkeypatch.undo()
    again = run_local(images, settings, workers=2)  # the next run (here without the fault) retries it
    assert {Path(s.uri).name: s.status for s in again.summaries}["img_2.fits"] == "ok"


def test_alerts_that_fail_for_one_image_are_reported_and_retried_next_run(images, tmp_path, monkeypatch):
    from skysift.pipeline import survey as runner

    real = runner.prepare_alerts

    def prepare(row, *args, **kwargs):
        if row.uri.endswith("img_1.fits"):
            raise KeyError("missing column")
        return real(row, *args, **kwargs)

    monkeypatch.setattr(runner, "prepare_alerts", prepare)
    settings = Settings.load(home=tmp_path / "home")

    report = run_local(images, settings, workers=2)

    [failure] = report.alert_failures
    assert failure["uri"].endswith("img_1.fits") and failure["reason"] == "internal_error"
    assert "KeyError" in failure["message"]
    evaluated = {p.name for p in (tmp_path / "home" / "alerts-evaluated").iterdir()}
    ok_ids = {s.image_id for s in report.summaries if s.status == "ok"}
    assert evaluated == ok_ids - {failure["image_id"]}
    assert json.loads(Path(report.report_path).read_text())["alert_failures"] == [failure]
    monkeypatch.setattr(runner, "prepare_alerts", real)
    again = run_local(images, settings)
    assert report.exit_code == 1 and again.alert_failures == [] and (tmp_path / "home" / "alerts-evaluated" / failure["image_id"]).exists()


def test_a_run_never_ingests_files_inside_its_home(images, tmp_path):
    home = Path(images[0]).parent / "skysift-data"  # the home inside the folder being processed
    (home / "cutouts").mkdir(parents=True)
    (home / "cutouts" / "abc.fits").write_bytes(Path(images[0]).read_bytes())
    report = run_local([*images, str(home / "cutouts" / "abc.fits")], Settings.load(home=home))
    assert len(report.summaries) == 6
    assert not any("skysift-data" in s.uri for s in report.summaries)


def test_file_discovery_leaves_out_the_home_even_inside_the_target(tmp_path, monkeypatch):
    from skysift.io.storage import list_fits

    (tmp_path / "night").mkdir()
    (tmp_path / "night" / "a.fits").write_bytes(b"")
    (tmp_path / "skysift-data" / "cutouts").mkdir(parents=True)
    (tmp_path / "skysift-data" / "cutouts" / "b.fits").write_bytes(b"")
    (tmp_path / "skysift-data-old.fits").write_bytes(b"")  # a sibling whose name starts like the home
    monkeypatch.chdir(tmp_path)
    assert list_fits(".", exclude=["skysift-data"]) == [str(tmp_path / "night" / "a.fits"),
                                                         str(tmp_path / "skysift-data-old.fits")]
    assert list_fits("skysift-data/cutouts/b.fits", exclude=["skysift-data"]) == []


@pytest.mark.parametrize(("same_field", "pooled"), [(True, True), (False, False)])
def test_the_alert_phase_forks_workers_only_for_images_with_earlier_images_of_their_sky(make_sky, tmp_path, monkeypatch,
                                                                                        same_field, pooled):
    from skysift.pipeline import survey as runner

    paths = [str(make_sky(f"v{i}.fits", seed=i, size=200, n_stars=20, n_galaxies=2,
                          header={"DATE-OBS": f"2026-03-0{i + 1}T00:00:00"},
                          center_ra=150.0 if same_field else 150.0 + 2 * i, center_dec=2.0)[0]) for i in range(3)]
    settings = Settings.load(home=tmp_path / "home")
    run_local(paths[1:], settings, workers=2)  # the later visits first: their alerts are prepared as they are measured
    pooled_phases = []
    real = runner.run_surviving

    def watch(function, *args, **kwargs):
        pooled_phases.append(function.__name__)
        return real(function, *args, **kwargs)

    monkeypatch.setattr(runner, "run_surviving", watch)
    # the earliest visit alone: the later ones' decisions re-open in the alert phase, in a pool when
    # they have an earlier image of their sky now (the same field) and not at all otherwise
    report = run_local(paths[:1], settings, workers=2)

    assert report.succeeded and report.count("ok") == 1
    assert ("_prepare_alerts" in pooled_phases) is pooled
    assert len(list((tmp_path / "home" / "alerts-evaluated").iterdir())) == 3  # every image decided either way
