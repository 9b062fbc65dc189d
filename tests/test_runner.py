"""Bulk runs: resume after an interruption without redoing or duplicating work; a report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skysift.cli import parse_bytes
from skysift.query import LocalCatalog
from skysift.runner import run_local
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
    assert first.interrupted and len(first.summaries) == 2
    assert LocalCatalog(settings.home).sql("SELECT COUNT(*) n FROM images")["n"][0] == 2
    second = run_local(images, settings, workers=2)
    assert not second.interrupted and second.skipped == 2 and len(second.summaries) == 4
    catalog = LocalCatalog(settings.home)
    assert catalog.sql("SELECT COUNT(*) n, COUNT(DISTINCT image_id) d FROM images").iloc[0].tolist() == [6, 6]
    assert catalog.sql("SELECT COUNT(*) n, COUNT(DISTINCT source_id) d FROM sources").pipe(lambda f: f["n"][0] == f["d"][0])
    third = run_local(images, settings)
    assert third.skipped == 5 and [s.status for s in third.summaries] == ["failed"]  # bad files are retried


def test_resume_fingerprints_only_files_already_in_the_table(images, tmp_path, monkeypatch):
    from skysift import runner, storage

    settings = Settings.load(home=tmp_path / "home")
    run_local(images[:3], settings)
    Path(images[2]).write_bytes(Path(images[3]).read_bytes())  # same name, new content
    hashed = []
    fingerprint = storage.fingerprint
    monkeypatch.setattr(storage, "fingerprint", lambda uri, data=None: hashed.append(uri) or fingerprint(uri, data))
    todo, done = runner._already_done(images, Path(settings.home))
    assert sorted(hashed) == sorted(images[:3])  # new files are to do without reading them
    assert [r["uri"] for r in done] == images[:2] and todo == images[2:]


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


def test_read_ahead_of_a_missing_or_remote_file_is_harmless(tmp_path):
    from skysift import storage

    storage.prefetch(str(tmp_path / "missing.fits"))  # the image's own read reports it
    storage.prefetch("s3://bucket/key.fits")  # nothing to read ahead for remote objects
