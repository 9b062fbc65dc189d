"""Cross-match with a reference catalog made from the sample survey's truth.

The reference is the truth of isolated, significant stars with a known astrometric
error (a systematic shift plus Gaussian scatter) and a known magnitude offset: the
cross-match must find >= 99% of them and report offsets consistent with what was
injected.
"""

from __future__ import annotations

import socket
import sys

import numpy as np
import pandas as pd
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from click.testing import CliRunner

from skysift.analysis.crossmatch import (
    BadReference,
    NothingToMatch,
    Reference,
    ReferenceUnavailable,
    crossmatch,
    fetch_gaia,
    pair_up,
    read_reference,
)
from skysift.analysis.sample import make_sample
from skysift.catalog.analysis_tables import analysis_catalog
from skysift.cli.analysis import register
from skysift.cli.main import cli
from skysift.io.storage import list_fits
from skysift.pipeline.survey import run_local
from skysift.settings import Settings

SHIFT_RA_ARCSEC, SHIFT_DEC_ARCSEC = 0.25, -0.15  # reference minus truth
SCATTER_ARCSEC = 0.15  # per axis
MAG_OFFSET = 0.1  # reference mag minus truth mag

register(cli)


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    root = tmp_path_factory.mktemp("xm")
    make_sample(root / "sky", size=512, seed=7)
    settings = Settings.load(home=root / "home")
    run_local(list_fits(str(root / "sky")), settings, workers=1)
    return root, settings.home


def _reference(root, rng) -> pd.DataFrame:
    truth = pd.read_parquet(root / "sky" / "truth.parquet")
    objects = truth.groupby([truth["ra"].round(7), truth["dec"].round(7)], as_index=False).agg(
        ra=("ra", "first"), dec=("dec", "first"), mag=("mag", "first"), kind=("kind", "first"), snr=("snr_true", "max"))
    coords = SkyCoord(objects["ra"].to_numpy() * u.deg, objects["dec"].to_numpy() * u.deg)
    visible = SkyCoord(coords[objects["snr"].to_numpy() >= 3])
    _, d2d, _ = coords.match_to_catalog_sky(visible, nthneighbor=2)
    keep = (objects["kind"] == "star") & (objects["snr"] >= 20) & (d2d.arcsec > 6.0)
    ref = objects[keep].reset_index(drop=True)
    cos_dec = np.cos(np.deg2rad(ref["dec"]))
    ref["ra"] = ref["ra"] + (SHIFT_RA_ARCSEC + rng.normal(0, SCATTER_ARCSEC, len(ref))) / 3600.0 / cos_dec
    ref["dec"] = ref["dec"] + (SHIFT_DEC_ARCSEC + rng.normal(0, SCATTER_ARCSEC, len(ref))) / 3600.0
    ref["mag"] = ref["mag"] + MAG_OFFSET
    return ref[["ra", "dec", "mag"]]


@pytest.fixture(scope="module")
def matched(survey):
    root, home = survey
    path = root / "reference.parquet"
    _reference(root, np.random.default_rng(3)).to_parquet(path)
    return home, crossmatch(home, read_reference(path), radius_arcsec=1.5), path


def test_crossmatch_finds_the_injected_reference_sources(matched):
    _, report, _ = matched
    assert report.n_reference_inside > 300
    assert report.matched_fraction >= 0.99


def test_offsets_are_the_injected_astrometric_error(matched):
    _, report, _ = matched
    # source minus reference: the opposite of the shift given to the reference
    assert report.dra_median_arcsec == pytest.approx(-SHIFT_RA_ARCSEC, abs=0.03)
    assert report.ddec_median_arcsec == pytest.approx(-SHIFT_DEC_ARCSEC, abs=0.03)
    # measured positions of SNR >= 20 stars add little to the injected scatter
    assert SCATTER_ARCSEC * 0.85 < report.dra_sigma_arcsec < SCATTER_ARCSEC * 1.3
    assert SCATTER_ARCSEC * 0.85 < report.ddec_sigma_arcsec < SCATTER_ARCSEC * 1.3


def test_zero_point_difference_is_the_injected_offset(matched):
    _, report, _ = matched
    assert report.n_dmag > 200
    assert report.dmag_median == pytest.approx(-MAG_OFFSET, abs=0.03)


def test_matches_table_is_queryable_and_rerun_replaces_it(matched):
    home, report, path = matched
    catalog = analysis_catalog(home)
    first = catalog.sql("SELECT COUNT(*) AS n, COUNT(DISTINCT source_id) AS s, MAX(sep_arcsec) AS worst FROM matches")
    assert first["n"][0] == report.n_matched == first["s"][0]
    assert first["worst"][0] <= 1.5
    crossmatch(home, read_reference(path), radius_arcsec=1.5)
    again = analysis_catalog(home).sql("SELECT COUNT(*) AS n FROM matches")
    assert again["n"][0] == report.n_matched
    joined = catalog.sql("SELECT COUNT(*) AS n FROM matches m JOIN sources s USING (source_id) "
                         "WHERE abs(m.mag_ab - s.mag_ab) < 1e-5")
    assert joined["n"][0] == report.n_matched


def test_pairs_are_one_to_one_closest_first():
    src_ra, src_dec = np.array([10.0, 10.0 + 0.4 / 3600]), np.array([0.0, 0.0])
    ref_ra, ref_dec = np.array([10.0 + 0.1 / 3600]), np.array([0.0])
    i_src, i_ref, sep, n_cand = pair_up(src_ra, src_dec, ref_ra, ref_dec, 1.0)
    assert i_src.tolist() == [0] and i_ref.tolist() == [0]
    assert sep[0] == pytest.approx(0.1, abs=1e-6)
    assert n_cand.tolist() == [1]


def test_reference_without_positions_is_a_typed_error(tmp_path):
    path = tmp_path / "ref.csv"
    path.write_text("ra,mag\n10.0,18.0\n")
    with pytest.raises(BadReference, match="ra and dec"):
        read_reference(path)


def test_cli_reports_offsets_and_rejects_a_bad_reference(matched, tmp_path):
    home, _, path = matched
    result = CliRunner().invoke(cli, ["--home", str(home), "crossmatch", "--reference", str(path), "--radius", "1.5arcsec"])
    assert result.exit_code == 0, result.output
    assert "of reference objects inside the images matched" in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,2\n")
    result = CliRunner().invoke(cli, ["--home", str(home), "crossmatch", "--reference", str(bad)])
    assert result.exit_code == 2
    assert "bad_reference" in result.output


def test_crossmatch_of_an_empty_home_says_so(tmp_path):
    with pytest.raises(NothingToMatch, match="skysift run"):
        crossmatch(tmp_path / "empty", Reference.from_frame(pd.DataFrame({"ra": [150.0], "dec": [2.0]}), "one"))


def test_gaia_without_network_is_a_typed_error(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network is unreachable (blocked by the test)")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    with pytest.raises(ReferenceUnavailable, match="without network access use --reference") as info:
        fetch_gaia([(150.1, 2.2, 0.05)])
    assert info.value.reason == "reference_unavailable"


def test_gaia_without_astroquery_is_a_typed_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "astroquery.gaia", None)
    with pytest.raises(ReferenceUnavailable, match="astroquery"):
        fetch_gaia([(150.1, 2.2, 0.05)])
