"""Completeness from artificial stars agrees with the truth of a synthetic sky.

The truth: which of the stars rendered into the image the pipeline detects, fitted
with the same curve. The estimate: stars injected into that same image afterwards.
The 50% points must agree within 0.2 mag.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from skysift.analysis.completeness import (
    CompletenessError,
    fit_completeness,
    inject_stars,
    record_completeness,
    recovered_stars,
    run_completeness,
)
from skysift.catalog.analysis_tables import analysis_catalog
from skysift.catalog.tables import LocalTables
from skysift.cli.analysis import register
from skysift.cli.main import cli
from skysift.pipeline.image import process_image
from skysift.pipeline.survey import run_local
from skysift.settings import Settings

register(cli)


@pytest.fixture(scope="module")
def estimate(truth_sky, tmp_path_factory):
    path, sky, spec = truth_sky
    settings = Settings.load(home=tmp_path_factory.mktemp("completeness") / "home")
    run_local([str(path)], settings)
    result = run_completeness(str(path), settings, rounds=3, n_per_round=300, seed=1)
    return path, sky, spec, settings, result


def test_completeness_agrees_with_the_truth_at_the_50_percent_point(estimate):
    path, sky, spec, settings, result = estimate
    sources = process_image(str(path), settings).sources
    stars = sky.truth["kind"] == "star"
    xy = np.c_[sky.truth["x"], sky.truth["y"]][stars]
    found, _ = recovered_stars(sources, xy, sky.truth["flux"][stars], radius_px=max(1.0, spec.fwhm_px / 2))
    truth = fit_completeness(sky.truth["mag"][stars], found)
    assert result.mag50 == pytest.approx(truth.mag50, abs=0.2)
    assert result.mag90 < result.mag50
    assert result.seeing_fwhm_px == pytest.approx(spec.fwhm_px, rel=0.1)


def test_binned_curve_falls_from_complete_to_empty(estimate):
    *_, result = estimate
    values = [b["completeness"] for b in result.bins if b["n_injected"] >= 20]
    assert values[0] > 0.8
    assert values[-1] < 0.1
    assert result.injections.num_rows == sum(b["n_injected"] for b in result.bins)


def test_limits_are_written_into_the_images_row(estimate):
    *_, settings, result = estimate
    pointers = record_completeness(settings.home, result)
    catalog = analysis_catalog(settings.home)
    row = catalog.sql("SELECT completeness_mag50, completeness_mag90, n_sources FROM images")
    assert len(row) == 1
    assert row["completeness_mag50"][0] == pytest.approx(result.mag50)
    assert row["completeness_mag90"][0] == pytest.approx(result.mag90)
    assert row["n_sources"][0] > 100  # the rest of the row is kept
    n = catalog.sql("SELECT COUNT(*) AS n, SUM(CASE WHEN recovered THEN 1 ELSE 0 END) AS k FROM injections")
    assert n["n"][0] == result.injections.num_rows
    assert json.loads(Path(pointers["curve"]).read_text())["mag50"] == pytest.approx(result.mag50)


def test_fit_recovers_a_known_curve():
    rng = np.random.default_rng(5)
    mag = rng.uniform(18, 24, 3000)
    m50, width = 21.3, 0.25
    probability = 0.95 / (1 + np.exp((mag - m50) / width))
    fit = fit_completeness(mag, rng.uniform(size=mag.size) < probability)
    assert fit.mag50 == pytest.approx(m50, abs=0.05)
    assert fit.plateau == pytest.approx(0.95, abs=0.02)


def test_all_recovered_cannot_be_fitted():
    with pytest.raises(CompletenessError, match="widen the magnitude range"):
        fit_completeness(np.linspace(15, 18, 50), np.ones(50, bool))


def test_injected_stars_carry_their_flux():
    data = np.zeros((64, 64), np.float32)
    out = inject_stars(data, np.array([[32.2, 30.7]]), np.array([1000.0]), 3.0, None, np.random.default_rng(0))
    assert out.sum() == pytest.approx(1000.0, rel=1e-3)
    assert np.unravel_index(out.argmax(), out.shape) == (31, 32)


def test_cli_records_limits_and_needs_a_processed_image(estimate, make_sky, tmp_path):
    path, _, _, settings, _ = estimate
    result = CliRunner().invoke(cli, ["--home", str(settings.home), "completeness", str(path), "--rounds", "1",
                                      "--stars", "250", "--plot", str(tmp_path / "c.png")])
    assert result.exit_code == 0, result.output
    assert "50% limit" in result.output
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    other, _ = make_sky("unprocessed.fits", size=256, n_stars=60)
    result = CliRunner().invoke(cli, ["--home", str(settings.home), "completeness", str(other), "--rounds", "1",
                                      "--stars", "60", "--mag-min", "16", "--mag-max", "25"])
    assert result.exit_code == 2
    assert "completeness_failed" in result.output and "skysift run" in result.output


def test_limits_land_in_a_compacted_images_table(truth_sky, make_sky, tmp_path):
    path, _, _ = truth_sky
    other, _ = make_sky("other.fits", size=256, n_stars=40, header={"SURVEY": "test"})  # same partition
    settings = Settings.load(home=tmp_path / "compacted")
    run_local([str(path), str(other)], settings)
    LocalTables(settings.home).compact()
    assert [p.name[:10] for p in (settings.home / "tables" / "images").glob("*/*/*/*.parquet")] == ["compacted-"]
    result = run_completeness(str(path), settings, rounds=1, n_per_round=250, seed=2)
    record_completeness(settings.home, result)
    rows = analysis_catalog(settings.home).sql("SELECT uri, completeness_mag50 FROM images ORDER BY uri")
    assert len(rows) == 2  # replaced, not duplicated; the other image kept
    limits = dict(zip(rows["uri"].str.rsplit("/", n=1).str[-1], rows["completeness_mag50"], strict=True))
    assert limits["sky.fits"] == pytest.approx(result.mag50)
    assert np.isnan(limits["other.fits"])
