"""An image without a celestial WCS gets a full pixel catalog, RA/Dec null (issue 14, item 5).

Source Extractor catalogs such an image in pixels; so does skysift now. Only solar
(helioprojective) images stay index-only. The pixel catalog is the same catalog the image
gives with its WCS (pixel measurements never depend on it), without sky positions and
without the ``wcs_invalid`` flag (nothing is wrong with its sources: there is no sky
position to give, and ``images.wcs_status`` = 'none' says so). Alerts, the 'new source'
rule and the plots cope with the null coordinates.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from skysift.alerts.log import LogPublisher
from skysift.catalog.query import LocalCatalog
from skysift.catalog.tables import LocalTables
from skysift.core import flags as F
from skysift.pipeline.image import ingest_image, process_image
from skysift.pipeline.survey import run_local
from skysift.settings import Settings

#: Source Extractor's reference synthetic sky (150 stars, 30 galaxies), see tests/data/sextractor.
REFERENCE = Path(__file__).parent / "data" / "sextractor" / "synthetic_512.fits"
WCS_KEYS = ("WCSAXES", "CRPIX", "CRVAL", "CDELT", "CUNIT", "CTYPE", "PC", "CD", "LONPOLE", "LATPOLE", "MJDREF",
            "RADESYS", "A_", "B_")


def without_wcs(path: Path, how: str) -> Path:
    """The reference sky with blank CTYPEs (as in sep's own test image) or no WCS keywords at all."""
    with fits.open(REFERENCE) as hdul:
        header = hdul[0].header.copy()
        data = hdul[0].data.copy()
    if how == "blank_ctype":
        keep = [(k, v) for k, v in header.items() if not k.startswith(("A_", "B_"))]  # SIP needs sky axes
        header = fits.Header(keep)
        header["CTYPE1"] = header["CTYPE2"] = ""
    else:
        header = fits.Header([(k, v) for k, v in header.items() if not k.startswith(WCS_KEYS)])
    fits.PrimaryHDU(data, header).writeto(path)
    return path


@pytest.fixture(scope="module")
def with_wcs():
    result = process_image(str(REFERENCE), Settings.load(home="unused"))
    assert result.ok and result.record.wcs_status == "valid"
    return result


@pytest.mark.parametrize("how", ["blank_ctype", "no_wcs_keywords"])
def test_an_image_without_a_celestial_wcs_gets_the_full_catalog_in_pixels(tmp_path, with_wcs, how):
    path = without_wcs(tmp_path / f"{how}.fits", how)
    settings = Settings.load(home=tmp_path / "home")

    summary = ingest_image(str(path), settings, store=LocalTables(settings.home), publisher=LogPublisher(settings.home))

    assert (summary.status, summary.route) == ("ok", "local") and summary.n_sources == with_wcs.sources.num_rows > 100
    row = LocalCatalog(settings.home).sql("SELECT * FROM images").iloc[0]
    assert (row["wcs_kind"], row["wcs_status"], row["n_sources"]) == ("none", "none", summary.n_sources)
    assert row["center_ra"] is None or np.isnan(row["center_ra"])
    sources = LocalCatalog(settings.home).arrow("SELECT * FROM sources ORDER BY source_num")
    assert sources.num_rows == summary.n_sources
    assert sources["ra"].null_count == sources["dec"].null_count == sources["healpix"].null_count == sources.num_rows
    assert sources["fwhm_arcsec"].null_count == sources.num_rows  # no pixel scale either
    assert not np.any(sources["flags"].to_numpy() & F.WCS_INVALID)  # nothing is wrong with these sources
    # the same catalog the image gives with its WCS: positions, fluxes and shapes in pixels
    reference = with_wcs.sources
    for column in ("x", "y", "flux", "flux_err", "a", "b", "flags"):
        expected = reference[column].to_numpy()
        if column == "flags":
            expected = expected & ~F.WCS_INVALID
        np.testing.assert_array_equal(sources[column].to_numpy(), expected, err_msg=column)
    # SEEING = 1.2" gives the 3 px filter through the WCS scale; without a scale the default is 3 px too
    assert row["filter_fwhm_px"] == pytest.approx(with_wcs.record.filter_fwhm_px) == pytest.approx(3.0)
    assert row["zero_point_ab"] == with_wcs.record.zero_point_ab  # MAGZERO calibrates without a WCS
    assert np.isfinite(sources["mag_ab"].to_numpy(zero_copy_only=False)).sum() > 100


def test_only_a_solar_image_stays_index_only(aia_file, tmp_path):
    result = process_image(str(aia_file), Settings.load(home=tmp_path / "home"))
    assert (result.record.status, result.record.route, result.record.wcs_kind) == (
        "indexed", "index_only", "helioprojective")


def test_alerts_and_the_new_source_rule_cope_with_pixel_catalogs(tmp_path, make_sky):
    folder = tmp_path / "night"
    folder.mkdir()
    # the same sky: first with a WCS, then a day later without one, then with one again
    earlier, _ = make_sky("a_earlier.fits", seed=5, size=256, n_stars=40, n_galaxies=5)
    later, _ = make_sky("c_later.fits", seed=5, size=256, n_stars=40, n_galaxies=5,
                        header={"DATE-OBS": "2026-01-03T00:00:00"})
    bare = folder / "b_pixels.fits"
    with fits.open(earlier) as hdul:
        header = fits.Header([(k, v) for k, v in hdul[0].header.items() if not k.startswith(WCS_KEYS)])
        header["DATE-OBS"] = "2026-01-02T00:00:00"
        fits.PrimaryHDU(hdul[0].data, header).writeto(bare)
    for path in (earlier, later):
        shutil.move(path, folder / path.name)
    settings = Settings.load(home=tmp_path / "home", alerts__high_snr=50.0)

    report = run_local(sorted(str(p) for p in folder.iterdir()), settings)

    assert report.succeeded and [s.status for s in report.summaries] == ["ok", "ok", "ok"]
    catalog = LocalCatalog(settings.home)
    alerts = catalog.sql("SELECT a.*, i.wcs_status FROM alerts a JOIN images i USING (image_id)")
    pixel_alerts = alerts[alerts["wcs_status"] == "none"]
    assert len(pixel_alerts) > 0 and set(pixel_alerts["rule"]) == {"high_snr"}  # no sky position: never 'new'
    assert pixel_alerts["ra"].isna().all() and np.isfinite(pixel_alerts["x"]).all()
    for cutout in pixel_alerts["cutout_uri"]:
        with fits.open(cutout) as hdul:
            assert hdul[0].data.shape == (32, 32) and "CTYPE1" not in hdul[0].header
    # the image with a WCS after it compares with the earlier image that has one, not with the pixel catalog
    assert "new_source" not in set(alerts["rule"])


def test_plots_draw_a_home_with_a_pixel_catalog(tmp_path):
    from click.testing import CliRunner

    from skysift.analysis import plotting
    from skysift.cli.main import cli

    folder = tmp_path / "night"
    folder.mkdir()
    shutil.copy(REFERENCE, folder / "sky.fits")
    without_wcs(folder / "pixels.fits", "no_wcs_keywords")
    home = tmp_path / "home"
    runner = CliRunner()
    assert runner.invoke(cli, ["--home", str(home), "run", str(folder), "-j", "1"]).exit_code == 0
    catalog = LocalCatalog(home)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figure = plotting.overview_figure(catalog.sql("SELECT * FROM sources"), catalog.sql("SELECT * FROM images"))
    assert len(figure.axes) >= 4
    out = tmp_path / "overview.png"
    result = runner.invoke(cli, ["--home", str(home), "plot", "--overview", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_completeness_runs_on_a_pixel_catalog_and_refuses_a_solar_image(tmp_path, aia_file):
    from skysift.analysis.completeness import CompletenessError, run_completeness

    settings = Settings.load(home=tmp_path / "home")
    result = run_completeness(str(without_wcs(tmp_path / "pixels.fits", "no_wcs_keywords")), settings,
                              rounds=1, n_per_round=40, seed=1)
    assert result.mag_system == "AB" and np.isfinite(result.mag50)  # MAGZERO calibrates, no WCS needed
    with pytest.raises(CompletenessError, match="helioprojective"):
        run_completeness(str(aia_file), settings, rounds=1, n_per_round=10)
