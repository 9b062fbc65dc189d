"""Fido client: ``Fido.search(a.Time, a.Wavelength, a.skysift.Index)`` over the images index."""

from __future__ import annotations

import gc

import astropy.units as u
import pytest


def _fido():
    from sunpy.net import Fido
    from sunpy.net import attrs as a

    import skysift.timelag.fido  # noqa: F401 - registers the client and a.skysift

    return Fido, a


def test_fido_search_returns_the_channel_from_the_index(small_lag_series):
    Fido, a = _fido()
    start, end = (t.replace(tzinfo=None).isoformat() for t in (small_lag_series.start, small_lag_series.end))
    result = Fido.search(a.Time(start, end), a.Wavelength(171 * u.AA), a.skysift.Index(small_lag_series.home))
    assert len(result) == 1 and result[0].client.__class__.__name__ == "SkysiftClient"
    table = result[0]
    assert sorted(table["uri"]) == sorted(str(p) for p in small_lag_series.paths_b)
    assert set(table["Wavelength"].to_value(u.AA)) == {171.0}
    assert (table["Start Time"][1:] > table["Start Time"][:-1]).all()


def test_fido_instrument_filter_and_wavelength_range(small_lag_series):
    Fido, a = _fido()
    start, end = (t.replace(tzinfo=None).isoformat() for t in (small_lag_series.start, small_lag_series.end))
    index = a.skysift.Index(small_lag_series.home)
    both = Fido.search(a.Time(start, end), a.Wavelength(160 * u.AA, 200 * u.AA), a.Instrument("AIA"), index)
    assert len(both[0]) == 24
    none = Fido.search(a.Time(start, end), a.Wavelength(171 * u.AA), a.Instrument("EUVI"), index)
    assert len(none[0]) == 0


# parfive's Downloader.download() creates an event loop it never closes; collected here so the
# ResourceWarning is reported (and ignored) in this test rather than in whichever test runs the GC.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_fido_fetch_copies_local_frames(small_lag_series, tmp_path):
    Fido, a = _fido()
    start, end = (t.replace(tzinfo=None).isoformat() for t in (small_lag_series.start, small_lag_series.end))
    result = Fido.search(a.Time(start, end), a.Wavelength(193 * u.AA), a.skysift.Index(small_lag_series.home))
    files = Fido.fetch(result, path=tmp_path / "{file}", progress=False)
    assert len(files) == 12 and not files.errors
    assert sorted(p.split("/")[-1] for p in files) == sorted(p.name for p in small_lag_series.paths_a)
    gc.collect()


def test_queries_without_the_skysift_attr_do_not_reach_the_client():
    from skysift.timelag.fido import SkysiftClient

    _, a = _fido()
    assert not SkysiftClient._can_handle_query(a.Time("2011-02-15", "2011-02-16"), a.Wavelength(171 * u.AA))
    assert SkysiftClient._can_handle_query(a.Time("2011-02-15", "2011-02-16"), a.skysift.Index("/x"))
