"""One image end to end on real files: catalogs, index rows, idempotent re-runs, failures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord

from skysift.alerts.log import LogPublisher
from skysift.catalog.query import LocalCatalog
from skysift.catalog.tables import LocalTables
from skysift.pipeline.image import ingest_image, process_image

M13 = SkyCoord("16h41m41.24s", "+36d27m35.5s")


def _ingest(path, settings):
    return ingest_image(str(path), settings, store=LocalTables(settings.home), publisher=LogPublisher(settings.home))


def test_m13_and_its_compressed_twins_give_the_same_catalog(m13_files, settings):
    catalogs = {kind: process_image(str(path), settings).sources.to_pandas() for kind, path in m13_files.items()}
    plain = catalogs.pop("plain")
    assert len(plain) > 50
    for kind, twin in catalogs.items():
        assert len(twin) == len(plain), kind
        np.testing.assert_allclose(twin["flux"], plain["flux"], rtol=1e-6)
        np.testing.assert_allclose(twin[["ra", "dec"]], plain[["ra", "dec"]], atol=1e-9)


def test_m13_sources_land_on_the_cluster(m13_files, settings):
    cat = process_image(str(m13_files["rice"]), settings).sources.to_pandas()
    separation = SkyCoord(cat["ra"].to_numpy() * u.deg, cat["dec"].to_numpy() * u.deg).separation(M13)
    assert separation.max() < 4 * u.arcmin  # the 300 x 300 px image at 1 arcsec/px
    centre = SkyCoord(np.median(cat["ra"]) * u.deg, np.median(cat["dec"]) * u.deg)
    assert centre.separation(M13) < 1 * u.arcmin


def test_aia_image_is_indexed_as_helioprojective_not_extracted(aia_file, settings):
    summary = _ingest(aia_file, settings)
    assert (summary.status, summary.route, summary.n_sources) == ("indexed", "index_only", 0)
    row = LocalCatalog(settings.home).sql("SELECT * FROM images").iloc[0]
    assert row["wcs_kind"] == "helioprojective" and row["wavelength_angstrom"] == 171.0
    assert "HPLN-TAN" in row["wcs_header"]
    assert LocalCatalog(settings.home).sql("SELECT COUNT(*) n FROM sources")["n"][0] == 0


def test_a_large_solar_image_keeps_its_helioprojective_wcs_in_the_index(aia_file, settings):
    whole = process_image(str(aia_file), settings).record.to_row()
    large = process_image(str(aia_file), settings, route="large").record.to_row()  # judged from its header only
    assert large["status"] == "indexed" and large["wcs_header"] == whole["wcs_header"]
    assert "HPLN-TAN" in large["wcs_header"]


def test_rerunning_an_image_replaces_its_rows_and_keeps_others(make_sky, settings):
    first, _ = make_sky("a.fits", seed=1)
    second, _ = make_sky("b.fits", seed=2)
    _ingest(first, settings)
    _ingest(second, settings)
    catalog = LocalCatalog(settings.home)
    before = catalog.sql("SELECT image_id, COUNT(*) n FROM sources GROUP BY image_id ORDER BY image_id")
    _ingest(first, settings)
    _ingest(first, settings)
    after = LocalCatalog(settings.home).sql("SELECT image_id, COUNT(*) n FROM sources GROUP BY image_id ORDER BY image_id")
    assert before.equals(after) and len(after) == 2
    assert LocalCatalog(settings.home).sql("SELECT COUNT(*) n FROM images")["n"][0] == 2


def test_failed_image_gets_an_index_row_and_a_quarantine_record(tmp_path, settings):
    bad = tmp_path / "upload.fits"
    bad.write_bytes(b"SIMPLE  =                    T" + b" " * 50)
    summary = _ingest(bad, settings)
    assert summary.status == "failed" and summary.reason in ("truncated", "not_fits")
    record = json.loads(Path(summary.pointers["quarantine"]).read_text())
    assert record["reason"] == summary.reason and record["uri"] == str(bad)
    assert bad.exists()  # the raw file is kept
    row = LocalCatalog(settings.home).sql("SELECT status, error_reason FROM images").iloc[0]
    assert (row["status"], row["error_reason"]) == ("failed", summary.reason)


def test_fixing_a_failed_upload_adds_the_new_version_and_keeps_the_failure_row(tmp_path, make_sky, settings):
    """An image is a version of an object (image_id hashes the URI with the content), and rows
    are replaced by image_id only: the complete upload is a new image with its own ``images``
    row (its commit point), and nothing removes the truncated version's failure record."""
    good, _ = make_sky("good.fits")
    target = tmp_path / "late.fits"
    target.write_bytes(good.read_bytes()[:5000])
    _ingest(target, settings)
    target.write_bytes(good.read_bytes())
    _ingest(target, settings)
    rows = LocalCatalog(settings.home).sql("SELECT status, uri, image_id FROM images ORDER BY status")
    assert rows["status"].tolist() == ["failed", "ok"]
    assert rows["uri"].nunique() == 1 and rows["image_id"].nunique() == 2


def test_sources_table_has_units_and_calibrated_columns(make_sky, settings):
    path, _sky = make_sky(n_stars=80, n_galaxies=0)
    table = process_image(str(path), settings).sources
    units = {f.name: f.metadata[b"unit"].decode() for f in table.schema}
    assert units["ra"] == "deg" and units["flux_ujy"] == "uJy" and units["x"] == "pix"
    cat = table.to_pandas()
    bright = cat[cat["snr"] > 50]
    np.testing.assert_allclose(bright["mag_ab"], 28.0 - 2.5 * np.log10(bright["flux"]), atol=1e-4)
    np.testing.assert_allclose(bright["flux_ujy"], 10 ** ((23.9 - bright["mag_ab"]) / 2.5), rtol=1e-4)
    assert cat["healpix"].min() >= 0 and cat["source_id"].is_unique
