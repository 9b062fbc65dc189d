"""Alert rules on a two-night synthetic survey: a transient is found, re-runs send nothing new."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import Cutout2D

from skysift.alerts.cutouts import cutout_fits
from skysift.alerts.log import LogPublisher
from skysift.analysis.sample import TRANSIENT_MAG, make_sample
from skysift.catalog.query import LocalCatalog
from skysift.io.fits import read_image
from skysift.pipeline.survey import run_local
from skysift.settings import Settings


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    folder = tmp_path_factory.mktemp("survey")
    paths = make_sample(folder / "sky", size=512, seed=7)
    return folder, paths


def test_transient_raises_exactly_one_new_source_alert(survey, tmp_path):
    folder, paths = survey
    settings = Settings.load(home=tmp_path / "home")
    report = run_local([str(p) for p in paths], settings, workers=2)
    assert report.count("ok") == len(paths)
    alerts = LogPublisher(settings.home).read()
    new = [a for a in alerts if a["rule"] == "new_source"]
    assert len(new) == 1
    truth = LocalCatalog(settings.home).sql(
        f"SELECT * FROM read_parquet('{folder / 'sky' / 'truth.parquet'}') WHERE kind = 'transient'")
    assert np.min(np.hypot((truth["ra"] - new[0]["ra"]) * np.cos(np.radians(new[0]["dec"])), truth["dec"] - new[0]["dec"])) * 3600 < 0.5
    assert new[0]["mag_ab"] == pytest.approx(TRANSIENT_MAG, abs=0.15)
    cutout = fits.getdata(new[0]["cutout_uri"])
    assert cutout.shape == (32, 32) and np.nanmax(cutout) > 100
    rows = LocalCatalog(settings.home).sql("SELECT rule, source_id FROM alerts")
    assert list(rows["source_id"]) == [new[0]["source_id"]]


def test_rerun_sends_no_duplicate_alerts_and_high_snr_rule_fires(survey, tmp_path):
    _, paths = survey
    settings = Settings.load(home=tmp_path / "home", alerts={"high_snr": 100.0})
    run_local([str(p) for p in paths], settings, workers=1)
    first = LogPublisher(settings.home).read()
    run_local([str(p) for p in paths], settings, workers=1)
    second = LogPublisher(settings.home).read()
    assert len(second) == len(first) and any(a["rule"] == "high_snr" for a in first)
    assert all(a["snr"] >= 100 for a in first if a["rule"] == "high_snr")
    counts = LocalCatalog(settings.home).sql("SELECT COUNT(*) n, COUNT(DISTINCT alert_id) d FROM alerts").iloc[0]
    assert counts["n"] == counts["d"] == len(first)


def test_disabled_rules_raise_nothing(survey, tmp_path):
    _, paths = survey
    settings = Settings.load(home=tmp_path / "home", alerts={"high_snr": None, "new_source_radius_arcsec": None})
    run_local([str(p) for p in paths[:5]], settings)
    assert LogPublisher(settings.home).read() == []


def test_alerts_prepared_in_parallel_are_delivered_as_one_process_delivers_them(survey, tmp_path):
    _, paths = survey
    logs = {}
    for workers in (1, 2):
        settings = Settings.load(home=tmp_path / f"home{workers}", alerts={"high_snr": 100.0})
        run_local([str(p) for p in paths], settings, workers=workers)
        logs[workers] = [(a["alert_id"], a["obs_time"]) for a in reversed(LogPublisher(settings.home).read())]
    assert len(logs[1]) > 3 and logs[2] == logs[1]  # the same alerts, sent in the same (time) order
    assert [t for _, t in logs[1]] == sorted(t for _, t in logs[1])


@pytest.mark.parametrize("headers", ["true", "late", "unknown"])
def test_alerts_prepared_while_measuring_are_those_of_one_process_whatever_the_headers_say(survey, tmp_path, monkeypatch,
                                                                                          caplog, headers):
    """Two workers prepare an image's alerts while they measure, once every image its header places
    earlier is measured. 'true': all stand. 'late': every header says the year 3000 and the files
    come latest first, so the latest image is prepared before the earlier ones are measured: it is
    prepared again after the measuring. 'unknown': no header time, nothing starts before every image
    is measured. The alerts and their order are one process's in every case."""
    import dataclasses
    import logging
    import re

    from skysift.pipeline import survey as survey_module

    _, paths = survey
    reference = Settings.load(home=tmp_path / "reference", alerts={"high_snr": 100.0})
    run_local([str(p) for p in paths], reference, workers=1)
    expected = [(a["alert_id"], a["obs_time"], a["detail"]) for a in LogPublisher(reference.home).read()]

    files = [str(p) for p in (reversed(paths) if headers == "late" else paths)]
    if headers != "true":
        real = survey_module._ListedImage.from_header
        told = None if headers == "unknown" else 32503680000.0  # 3000-01-01

        def from_header(unit, header):
            return dataclasses.replace(real(unit, header), seconds=told)

        monkeypatch.setattr(survey_module._ListedImage, "from_header", staticmethod(from_header))
    settings = Settings.load(home=tmp_path / "home", alerts={"high_snr": 100.0})
    with caplog.at_level(logging.DEBUG, logger="skysift.pipeline.early_alerts"):
        report = run_local(files, settings, workers=2)

    assert report.succeeded
    assert [(a["alert_id"], a["obs_time"], a["detail"]) for a in LogPublisher(settings.home).read()] == expected
    assert any("earlier image" in detail for _, _, detail in expected)
    [message] = [r.getMessage() for r in caplog.records if "prepared while measuring" in r.getMessage()]
    standing, ahead, again = map(int, re.findall(r"\d+", message))
    assert standing + again == len(paths)
    assert (again > 0) is (headers == "late")
    assert (ahead > 0) is (headers != "unknown")  # without header times, nothing starts before the last image


def test_cutouts_read_as_sections_equal_cutouts_of_the_whole_image(survey):
    _, paths = survey
    image = read_image(str(paths[0]))
    ny, nx = image.data.shape
    positions = [(100.3, 200.7), (0.2, 5.6), (nx - 0.6, ny - 1.5), (15.49, ny - 0.1), (nx / 2, ny / 2)]
    alerts = [{"x": x, "y": y, "alert_id": f"a{i}", "rule": "high_snr"} for i, (x, y) in enumerate(positions)]
    for alert, data in zip(alerts, cutout_fits(str(paths[0]), None, alerts, 32), strict=True):
        with fits.open(io.BytesIO(data)) as hdul:
            expected = Cutout2D(image.data, (alert["x"], alert["y"]), 32, wcs=image.wcs, mode="partial", fill_value=np.nan)
            np.testing.assert_array_equal(hdul[0].data, expected.data.astype(np.float32))
            assert hdul[0].header["ALERTID"] == alert["alert_id"]
            reference = expected.wcs.to_header(relax=True)
            assert all(hdul[0].header[key] == reference[key] for key in reference)


@pytest.mark.parametrize("with_wcs", [True, False], ids=["wcs", "no-wcs"])
def test_cutout_files_are_the_bytes_astropy_writes(survey, with_wcs):
    """Cut-outs are assembled without an HDU object: the same file as PrimaryHDU(...).writeto."""
    _, paths = survey
    image = read_image(str(paths[0]))
    ny, nx = image.data.shape
    positions = [(100.3, 200.7), (0.2, 5.6), (nx - 0.6, ny - 1.5), (15.49, ny - 0.1), (nx / 2, ny / 2)]
    alerts = [{"x": x, "y": y, "alert_id": f"alert-{i:02d}", "rule": "new_source"} for i, (x, y) in enumerate(positions)]
    wcs = image.wcs if with_wcs else None
    assert wcs is None or wcs.sip is not None  # the sample's WCS is TAN-SIP
    for alert, data in zip(alerts, cutout_fits(str(paths[0]), None, alerts, 32, with_wcs=with_wcs), strict=True):
        cut = Cutout2D(image.data, (alert["x"], alert["y"]), 32, wcs=wcs, mode="partial", fill_value=np.nan)
        header = cut.wcs.to_header(relax=True) if wcs is not None else fits.Header()
        header["ALERTID"], header["RULE"] = alert["alert_id"], alert["rule"]
        expected = io.BytesIO()
        fits.PrimaryHDU(cut.data.astype(np.float32), header).writeto(expected)
        assert data == expected.getvalue()


@pytest.mark.parametrize("value", ["a", "new_source", "af4b4318a0e3a44b1de5", "it's", "''", "x" * 8, "x" * 9,
                                   "x" * 66, "x" * 67, "x" * 68, "x" * 69, "y" * 120, "a'" * 40, " lead", "trail  ",
                                   "semi;colon / slash", "~!@#$%^&*()"])
def test_string_cards_are_astropys(value):
    """ALERTID and RULE cards are formatted without astropy's Card: the same 80 (or more,
    CONTINUE) characters as Card(keyword, value).image, whatever the value."""
    from skysift.alerts.cutouts import _string_card

    for keyword in ("ALERTID", "RULE", "rule"):
        assert _string_card(keyword, value) == fits.Card(keyword, value).image


def test_reference_pixel_cards_are_as_astropy_reads_them():
    """A cut-out's CRPIX cards (wcslib's text) are taken as they are when they are plain real
    cards, which astropy reads back unchanged; any other card goes through astropy's Card."""
    import copy

    from astropy.wcs import WCS, WCSHDO_P14, WCSHDO_all

    from skysift.alerts.cutouts import _PLAIN_REAL_CARD, _as_astropy_reads

    wcs = WCS(naxis=2)
    wcs.wcs.ctype, wcs.wcs.crval, wcs.wcs.cdelt = ["RA---TAN", "DEC--TAN"], [10, 20], [-1e-4, 1e-4]
    shifted = copy.deepcopy(wcs.wcs)
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.uniform(-5000, 5000, 300), rng.integers(-3000, 3000, 100).astype(float),
                             rng.uniform(-1, 1, 100) * 10.0 ** rng.integers(-12, 12, 100)])
    plain = 0
    for value in values:
        shifted.crpix = [value, -value]
        text = shifted.to_header(WCSHDO_P14 | WCSHDO_all)
        for card in (text[k : k + 80] for k in range(0, len(text), 80) if text.startswith("CRPIX", k)):
            assert _as_astropy_reads(card) == fits.Card.fromstring(card).image
            plain += bool(_PLAIN_REAL_CARD.fullmatch(card.rstrip()))
    assert plain == 2 * len(values)  # every one taken as it is
    for card in ("crpix1  =               1024.5 / lower case", "CRPIX1  =             1.5D+03 / D exponent",
                 "CRPIX1  = '1024.5'", "CRPIX1  =  1024.5 / a short value field"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fits.verify.VerifyWarning)  # astropy fixes some of them
            assert _as_astropy_reads(card.ljust(80)) == fits.Card.fromstring(card.ljust(80)).image


def test_a_rewritten_image_gets_cutouts_with_its_new_wcs(survey, tmp_path):
    """The image's WCS is kept per file version: cut-outs of the same file again use it (the
    bytes astropy writes), a rewritten file's cut-outs its new WCS."""
    import shutil

    _, paths = survey
    path = tmp_path / "image.fits"
    shutil.copy(paths[0], path)
    alerts = [{"x": 100.3, "y": 200.7, "alert_id": "a1", "rule": "new_source"}]
    first = cutout_fits(str(path), None, alerts, 32)
    assert cutout_fits(str(path), None, alerts, 32) == first
    with fits.open(path) as hdul:
        hdul[0].header["CRVAL1"] += 0.5
        hdul.writeto(path, overwrite=True)
    image = read_image(str(path))
    again = cutout_fits(str(path), None, alerts, 32)
    with fits.open(io.BytesIO(again[0])) as hdul:
        assert hdul[0].header["CRVAL1"] == image.wcs.wcs.crval[0] != fits.getheader(paths[0])["CRVAL1"]


def test_earlier_images_gone_since_they_were_measured_are_skipped_not_fatal(survey, tmp_path, caplog):
    import shutil

    _, paths = survey
    copies = [tmp_path / "sky" / path.name for path in paths]
    copies[0].parent.mkdir()
    for path, copy in zip(paths, copies, strict=True):
        shutil.copy(path, copy)
    first_night, second_night = copies[: len(copies) // 2], copies[len(copies) // 2 :]
    settings = Settings.load(home=tmp_path / "home")
    run_local([str(p) for p in first_night], settings)
    for path in first_night:
        path.unlink()  # the first night's files moved away after it was processed
    report = run_local([str(p) for p in second_night], settings)
    assert report.count("ok") == len(second_night) and not report.interrupted
    assert "forced photometry skipped earlier image" in caplog.text
    # without the earlier pixels only the catalogs decide: the transient is still found
    new = [a for a in LogPublisher(settings.home).read() if a["rule"] == "new_source"]
    assert any(abs(a["mag_ab"] - TRANSIENT_MAG) < 0.15 for a in new)
    assert all("in 0 earlier image(s)" in a["detail"] for a in new)


def test_skies_kept_while_measuring_leave_the_alerts_as_the_alert_phase_makes_them(survey, tmp_path, monkeypatch):
    """A survey's measuring keeps the sky of each image another overlaps: the alert phase then reads
    no image whole and estimates no sky, and raises the same alerts, with the same forced photometry."""
    from skysift.alerts import forced
    from skysift.pipeline import survey as survey_module

    _, paths = survey
    monkeypatch.setattr(forced, "PATCH_CELLS", 16)  # each earlier image read whole, as for a crowded candidate list
    estimates = []
    subtract = forced.subtract_sky
    monkeypatch.setattr(forced, "subtract_sky", lambda *args: estimates.append(1) or subtract(*args))
    logs, counts = {}, {}
    for kept in (True, False):
        if not kept:
            monkeypatch.setattr(survey_module, "_overlapped", lambda listed, settings: set())
        estimates.clear()
        settings = Settings.load(home=tmp_path / f"home-{kept}", alerts={"new_source_min_snr": 5.0})
        report = run_local([str(p) for p in paths], settings, workers=1)
        assert report.succeeded
        counts[kept] = len(estimates)
        logs[kept] = [(a["alert_id"], a["snr"], a["detail"]) for a in LogPublisher(settings.home).read()]
    assert logs[True] == logs[False] and any("earlier image" in detail for _, _, detail in logs[True])
    assert counts[True] == 0 < counts[False]


def _visits_with_cosmic_rays(folder, n: int = 4, size: int = 512):
    """``n`` visits of one field, a night apart, each with its own cosmic rays: candidates of the
    'new source' rule that forced photometry on every earlier visit, read whole, must rule on."""
    from datetime import UTC, datetime, timedelta

    from skysift.analysis.synthetic import SkySpec, random_sources, render, write_fits

    folder.mkdir()
    rng = np.random.default_rng(21)
    stars, galaxies = random_sources(SkySpec(nx=size, ny=size), 80, 15, rng)
    for k in range(n):
        when = datetime(2026, 5, 1, 2, 0, tzinfo=UTC) + timedelta(days=k)
        sky = render(SkySpec(nx=size, ny=size, fwhm_px=3.0 + 0.2 * k), stars, galaxies, np.random.default_rng(30 + k),
                     {"DATE-OBS": when.strftime("%Y-%m-%dT%H:%M:%S"), "FILTER": "r", "SURVEY": "visits"})
        hits = np.random.default_rng(40 + k)
        for _ in range(6):
            y, x = hits.integers(40, size - 40, 2)
            sky.data[y, x : x + 2] += np.float32(4000.0)
        write_fits(folder / f"visit_{k}.fits", sky)
    return folder


def test_a_survey_run_as_a_user_runs_it_keeps_each_earlier_sky_and_raises_the_same_alerts(tmp_path, monkeypatch):
    """`skysift -vv run DIR` (its own process, two measuring workers): every visit's sky is kept
    by the worker that measured it, none is estimated again for forced photometry, no folder of
    skies is left in the home, and the alerts are those of a run that keeps none."""
    import re
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from skysift.pipeline import survey as survey_module

    folder = _visits_with_cosmic_rays(tmp_path / "visits")
    home = tmp_path / "home"
    script = Path(sys.executable).with_name("skysift")  # the entry point a user runs, when installed
    command = [str(script)] if script.exists() else [sys.executable, "-m", "skysift.cli.main"]
    done = subprocess.run([*command, "-vv", "--home", str(home), "run", str(folder), "-j", "2"],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    kept = [line for line in done.stderr.splitlines() if "sky kept for forced photometry" in line]
    estimated = [line for line in done.stderr.splitlines() if "sky estimated for forced photometry" in line]
    assert len(kept) == 4 and estimated == []
    # every visit's alerts prepared by the measuring workers, some while later visits were still measured
    [early] = [line for line in done.stderr.splitlines() if "prepared while measuring" in line]
    assert re.search(r"alerts of 4 image\(s\) prepared while measuring \([1-4] started before the last image was "
                     r"measured\); 0 prepared again", early), early
    assert not list(home.glob(".running-*"))  # (its folder in memory goes with it: test_forced)
    ran = [(a["alert_id"], a["detail"]) for a in LogPublisher(home).read()]
    assert any("earlier image" in detail for _, detail in ran)

    from skysift.alerts import forced

    monkeypatch.setattr(survey_module, "_overlapped", lambda listed, settings: set())
    estimates = []
    subtract = forced.subtract_sky
    monkeypatch.setattr(forced, "subtract_sky", lambda *args: estimates.append(1) or subtract(*args))
    reference = Settings.load(home=tmp_path / "reference")
    run_local([str(p) for p in sorted(folder.glob("*.fits"))], reference, workers=1)
    assert [(a["alert_id"], a["detail"]) for a in LogPublisher(reference.home).read()] == ran
    assert len(estimates) == 3  # without them, the three earlier visits' skies are estimated (read whole) once each
    shutil.rmtree(home)


def test_an_early_preparation_that_read_an_old_row_of_an_image_measured_again_is_prepared_again(tmp_path, monkeypatch,
                                                                                                caplog):
    """Visit 3 was measured before with another observation time (as an older skysift might have
    read its header): ten days earlier. Measured again (--force) alongside visit 2, its old row is
    still the tables' while the pool prepares visit 2's alerts (visit 3's measuring waits for that),
    which then count it as an earlier image. Its new row is later than visit 2: the alert phase
    prepares visit 2 again, and the alerts are one process's, which never saw the old row as visit
    2's history. Visit 3 itself, which the home had before, is not prepared while measuring."""
    import logging
    import shutil
    import time
    from datetime import timedelta

    from skysift.core import metadata
    from skysift.pipeline import survey as survey_module

    visits = _visits_with_cosmic_rays(tmp_path / "visits")
    real_time, real_process, real_prepare = metadata.observation_time, survey_module.process_image, survey_module._prepare_alerts
    prepared_flag = tmp_path / "visit 2 prepared"

    def after_visit_2(uri, *args, **kwargs):  # forked pool workers inherit it
        if uri.endswith("visit_3.fits"):
            deadline = time.monotonic() + 120
            while not prepared_flag.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
        return real_process(uri, *args, **kwargs)

    def flagging(row, *args, **kwargs):
        alerts = real_prepare(row, *args, **kwargs)
        if row.uri.endswith("visit_2.fits"):
            prepared_flag.touch()
        return alerts

    logs = {}
    for workers in (1, 2):
        folder = tmp_path / "work"  # the same place: the same image_ids
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(visits, folder)
        settings = Settings.load(home=tmp_path / f"home{workers}")
        monkeypatch.setattr(metadata, "observation_time", lambda header: real_time(header) - timedelta(days=10))
        run_local([str(folder / "visit_3.fits")], settings)
        monkeypatch.setattr(metadata, "observation_time", real_time)
        if workers == 2:  # visit 3 is measured only once visit 2's alerts are prepared
            monkeypatch.setattr(survey_module, "process_image", after_visit_2)
            monkeypatch.setattr(survey_module, "_prepare_alerts", flagging)
        with caplog.at_level(logging.DEBUG, logger="skysift.pipeline"):
            report = run_local([str(folder / "visit_2.fits"), str(folder / "visit_3.fits")], settings, workers=workers,
                               resume=False)
        assert report.succeeded
        logs[workers] = [(a["alert_id"], a["detail"]) for a in LogPublisher(settings.home).read()]
    assert logs[2] == logs[1]
    messages = [r.getMessage() for r in caplog.records]
    assert any("1 image(s) prepared while measuring saw other earlier images" in m for m in messages)
    # visit 3 was in the home before: its alerts (and their packets, maybe sent already) wait for the alert phase
    assert any(m.startswith("alerts of 1 image(s) prepared while measuring") for m in messages)


def test_one_images_alerts_ask_the_store_each_history_question_once(survey, tmp_path):
    """The rule and the packets ask the same history questions: the store (a listing of the images
    table here, queries to the cloud catalog on AWS) is asked each once per image, and a caller
    changing the list it got does not change the next caller's."""
    from collections import Counter

    from skysift.alerts.delivery import prepare_alerts
    from skysift.catalog.ports import HistoryMemo
    from skysift.catalog.tables import LocalTables

    _, paths = survey
    settings = Settings.load(home=tmp_path / "home", alerts={"new_source_min_snr": 5.0})
    run_local([str(p) for p in paths], settings, workers=1)
    asked = Counter()

    class Counting(LocalTables):
        def earlier_images(self, *args):
            asked["images", args] += 1
            return super().earlier_images(*args)

        def earlier_sources(self, *args):
            asked["sources", args] += 1
            return super().earlier_sources(*args)

    store = Counting(settings.home)
    raised = {a["image_id"] for a in LogPublisher(settings.home).read() if a["rule"] == "new_source"}
    last = max((r for r in store.images() if r.image_id in raised), key=lambda r: r.obs_time)
    alerts = prepare_alerts(last, store.read_sources(last), store, settings.alerts, settings.background)
    assert any(a["rule"] == "new_source" for a in alerts) and asked and set(asked.values()) == {1}
    memo = HistoryMemo(store)
    first = memo.earlier_images(last.center_ra, last.center_dec, 0.1, last.obs_time)
    first.clear()
    assert memo.earlier_images(last.center_ra, last.center_dec, 0.1, last.obs_time)
