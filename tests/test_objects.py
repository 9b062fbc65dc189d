"""Objects: detections associated across images, kept up to date by `skysift run`, idempotent."""

from __future__ import annotations

import os
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet
import pytest
from astropy import units as u
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from skysift.analysis.sample import make_sample
from skysift.catalog.objects import (
    _CELLS,
    CELL_ORDER,
    OBJECTS_SCHEMA,
    _recompute,
    _Sources,
    catalog_count,
    objects_root,
    rebuild_objects,
    update_objects,
)
from skysift.catalog.query import LocalCatalog
from skysift.catalog.records import ImageRecord
from skysift.catalog.tables import LocalTables
from skysift.cli.main import cli
from skysift.core.astrometry import healpix_index
from skysift.core.flags import CLEAN_MASK

SIZE = 256
EDGE_MARGIN_PX = 15  # detections closer to the edge are flagged (not clean)


def _objects(home) -> pa.Table:
    return LocalCatalog(home).arrow("SELECT * FROM objects ORDER BY object_id")


def _separation_arcsec(ra, dec, ras, decs) -> np.ndarray:
    return np.hypot((np.asarray(ras) - ra) * np.cos(np.deg2rad(dec)), np.asarray(decs) - dec) * 3600.0


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    """`skysift run` over the sample survey without its last image, then again with it."""
    root = tmp_path_factory.mktemp("objects")
    make_sample(root / "sky", size=SIZE, seed=5)
    home = str(root / "home")
    last = root / "sky" / "field_008.fits"
    last.rename(root / "field_008.fits")
    runner = CliRunner()
    result = runner.invoke(cli, ["--home", home, "run", str(root / "sky"), "-j", "2"])
    assert result.exit_code == 0, result.output
    assert "objects:" in result.output and "table built from every source" in result.output
    before = _objects(home)
    (root / "field_008.fits").rename(last)
    result = runner.invoke(cli, ["--home", home, "run", str(root / "sky"), "-j", "2"])
    assert result.exit_code == 0, result.output
    return root, home, before


def _truth_on_sky(root) -> pd.DataFrame:
    """Each injected source once, with the number of images on which it lies well inside."""
    truth = pd.read_parquet(root / "sky" / "truth.parquet")
    inside = truth[truth["x"].between(EDGE_MARGIN_PX, SIZE - 1 - EDGE_MARGIN_PX)
                   & truth["y"].between(EDGE_MARGIN_PX, SIZE - 1 - EDGE_MARGIN_PX)]
    key = [truth["ra"].round(7), truth["dec"].round(7)]
    sky = truth.groupby(key).agg(kind=("kind", "first"), ra=("ra", "first"), dec=("dec", "first"),
                                 snr=("snr_true", "min"), files=("file", "nunique"))
    covering = inside.groupby([inside["ra"].round(7), inside["dec"].round(7)])["file"].nunique()
    sky["n_covering"] = covering.reindex(sky.index).fillna(0).astype(int)
    sky = sky.reset_index(drop=True)
    sky["nearest_arcsec"] = [np.sort(_separation_arcsec(r.ra, r.dec, sky["ra"], sky["dec"]))[1] for r in sky.itertuples()]
    return sky


def test_each_isolated_star_is_one_object_seen_in_every_image_covering_it(survey):
    root, home, _ = survey
    sky = _truth_on_sky(root)
    stars = sky[(sky["kind"] == "star") & (sky["nearest_arcsec"] > 6) & (sky["snr"] > 30)
                & (sky["n_covering"] > 0) & (sky["n_covering"] == sky["files"])]
    objects = _objects(home).to_pandas()
    assert len(stars) >= 20 and set(stars["n_covering"]) >= {2}  # each field seen on both nights
    for star in stars.itertuples():
        near = objects[_separation_arcsec(star.ra, star.dec, objects["ra"], objects["dec"]) < 2.0]
        assert len(near) == 1, (star, near)
        found = near.iloc[0]
        assert found["n_det"] == found["n_images"] == star.n_covering, (star, found)
        assert _separation_arcsec(star.ra, star.dec, [found["ra"]], [found["dec"]])[0] < 0.3
        assert len(found["source_ids"]) == found["n_det"] and found["photometry"][0]["band"] == "r"


def test_the_transient_is_one_object_seen_once_on_the_second_night(survey):
    root, home, _ = survey
    sky = _truth_on_sky(root)
    transient = sky[sky["kind"] == "transient"].iloc[0]
    objects = _objects(home).to_pandas()
    near = objects[_separation_arcsec(transient.ra, transient.dec, objects["ra"], objects["dec"]) < 1.0]
    assert len(near) == 1
    assert near.iloc[0]["n_det"] == 1
    assert near.iloc[0]["first_seen"] == near.iloc[0]["last_seen"] >= pd.Timestamp("2026-03-21", tz="UTC")


def test_objects_link_each_clean_detection_once(survey):
    _, home, _ = survey
    catalog = LocalCatalog(home)
    counts = catalog.arrow(
        "SELECT (SELECT COUNT(*) FROM detections) AS linked, (SELECT COUNT(DISTINCT source_id) FROM detections) "
        f"AS distinct_linked, (SELECT COUNT(*) FROM sources WHERE ra IS NOT NULL AND (flags & {CLEAN_MASK}) = 0) AS clean, "
        "(SELECT SUM(n_det) FROM objects) AS n_det").to_pylist()[0]
    assert counts["linked"] == counts["distinct_linked"] == counts["clean"] == counts["n_det"] > 100
    assert catalog.arrow("SELECT * FROM objects LIMIT 0").schema.field("photometry").type == \
        OBJECTS_SCHEMA.field("photometry").type


def test_running_again_or_twice_changes_no_object(survey):
    root, home, _ = survey
    before = _objects(home)
    runner = CliRunner()
    for args in (["run", str(root / "sky")], ["run", str(root / "sky"), "--force", "-j", "2"], ["objects", "--rebuild"]):
        result = runner.invoke(cli, ["--home", home, *args])
        assert result.exit_code == 0, result.output
        assert _objects(home).equals(before), args


def test_a_new_image_updates_the_objects_it_touches_and_no_other(survey, tmp_path):
    _, home, before = survey
    after = _objects(home).to_pandas().set_index("object_id")
    before = before.to_pandas().set_index("object_id")
    footprint = LocalCatalog(home).sql("SELECT corners_ra, corners_dec FROM images WHERE uri LIKE '%field_008.fits'")
    ra, dec = (np.asarray(footprint.iloc[0][c]) for c in ("corners_ra", "corners_dec"))
    margin = 2.0 / 3600
    touched = after["ra"].between(ra.min() - margin, ra.max() + margin) & \
        after["dec"].between(dec.min() - margin, dec.max() + margin)
    unchanged = after[~touched]
    assert len(unchanged) > 20 and touched.sum() > 10
    pd.testing.assert_frame_equal(unchanged, before.loc[unchanged.index])
    grown = after[touched].join(before[["n_det"]].rename(columns={"n_det": "n_det_before"}), how="inner")
    assert (grown["n_det"] == grown["n_det_before"] + 1).mean() > 0.8  # seen once more, same id
    # the incremental result is what a rebuild from every source gives
    incremental = _objects(home)
    rebuild_objects(home)
    assert _objects(home).equals(incremental)


def test_query_shows_objects_after_run(survey):
    _, home, _ = survey
    result = CliRunner().invoke(cli, ["--home", home, "objects"])
    assert result.exit_code == 0, result.output
    assert "objects from" in result.output and "association radius 1 arcsec" in result.output


# -- an object across the edge of two sky cells --------------------------------------------------------
def _cell(ra: float, dec: float) -> int:
    return int(_CELLS.lonlat_to_healpix(ra * u.deg, dec * u.deg))


def _edge(dec: float = 2.2) -> float:
    """An RA (deg) where the order-CELL_ORDER cell changes along the parallel ``dec``."""
    lo = 150.0
    hi = next(lo + step for step in np.arange(0.01, 3, 0.01) if _cell(lo + step, dec) != _cell(lo, dec))
    while hi - lo > 1e-10:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _cell(mid, dec) == _cell(lo, dec) else (lo, mid)
    return hi


def _write_image(home, image_id: str, night: str, ra: float, dec: float) -> None:
    """An ``images`` row and one clean r-band detection at (ra, dec), deg, whose footprint is that point."""
    row = ImageRecord(image_id=image_id, status="ok", route="local", survey="edge", band="r", obs_night=night)
    sources = pa.table({
        "image_id": [image_id], "source_id": [f"{image_id}:0"],
        "obs_time": pa.array([datetime.fromisoformat(f"{night}T03:00:00+00:00")], pa.timestamp("us", tz="UTC")),
        "ra": [ra], "dec": [dec], "mag_ab": pa.array([18.0], pa.float32()),
        "mag_ab_err": pa.array([0.01], pa.float32()), "flags": pa.array([0], pa.int32()),
        "healpix": healpix_index(np.array([ra]), np.array([dec])),
    })
    images = pa.table({"image_id": [image_id], "status": ["ok"], "center_ra": [ra], "center_dec": [dec],
                       "radius_deg": [1e-6]})
    tables = LocalTables(home)
    tables.write_rows("sources", row, sources)
    tables.write_rows("images", row, images)


def test_each_cell_file_holds_its_own_objects_in_healpix_then_object_id_order(tmp_path):
    """Cells are written as slices of one sorted table: each file has only its cell's objects,
    in the order its readers see (HEALPix index, then object_id)."""
    import pyarrow.parquet as pq

    home = tmp_path / "home"
    dec, edge = 2.2, _edge(2.2)
    arcsec = 1 / 3600 / np.cos(np.deg2rad(dec))
    offsets = [-23, 17, -5, 11, -41, 29, 3, -13]  # arcsec from a cell edge: objects on both sides, out of order
    for k, offset in enumerate(offsets):
        _write_image(home, f"im{k:02d}", "2026-01-01", edge + offset * arcsec, dec)
    report = update_objects(home, [f"im{k:02d}" for k in range(len(offsets))])
    assert report.objects == len(offsets)
    files = sorted(objects_root(home).glob("sky_cell=*/*.parquet"))
    assert [f.parent.name for f in files] == sorted(f"sky_cell={c}" for c in {_cell(edge - arcsec, dec), _cell(edge + arcsec, dec)})
    for path in files:
        rows = pq.read_table(path, columns=["healpix", "object_id"]).to_pylist()
        cell = int(path.parent.name.split("=", 1)[1])
        assert {int(r["healpix"]) >> (2 * (16 - CELL_ORDER)) for r in rows} == {cell}
        keys = [(r["healpix"], r["object_id"]) for r in rows]
        assert len(keys) == 4 and keys == sorted(keys)


def test_an_object_whose_mean_crosses_a_sky_cell_edge_moves_to_the_new_cell(tmp_path):
    home = tmp_path / "home"
    dec, edge = 2.2, _edge(2.2)
    arcsec = 1 / 3600 / np.cos(np.deg2rad(dec))  # one arcsec in RA, deg
    old_cell, new_cell = _cell(edge - 0.1 * arcsec, dec), _cell(edge + 0.1 * arcsec, dec)
    assert old_cell != new_cell
    _write_image(home, "aaaa", "2026-01-01", edge + 0.30 * arcsec, dec)
    _write_image(home, "bbbb", "2026-01-02", edge - 0.65 * arcsec, dec)
    update_objects(home, ["aaaa", "bbbb"])  # first time: built from every source
    first = _objects(home).to_pylist()
    assert len(first) == 1 and first[0]["n_det"] == 2
    assert _cell(first[0]["ra"], dec) == old_cell
    # 0.9 arcsec from the first detection, in the new cell: the object it joins is now centred there and
    # must leave the old cell's file, even when only the new cell is asked for (update_objects asks for
    # the cells within 1 arcsec of the image, which here happen to include the old one)
    _write_image(home, "cccc", "2026-01-03", edge + 1.20 * arcsec, dec)
    _recompute(_Sources(home), objects_root(home), {new_cell}, 1.0, ["cccc"])
    objects = _objects(home).to_pylist()
    files = sorted((home / "tables" / "objects").glob("sky_cell=*/*.parquet"))
    assert len(objects) == 1 and [f.parent.name for f in files] == [f"sky_cell={new_cell}"]
    assert objects[0]["n_det"] == 3 and objects[0]["object_id"] == first[0]["object_id"]
    assert LocalCatalog(home).arrow("SELECT sky_cell FROM objects").column(0).to_pylist() == [
        int(objects[0]["healpix"]) >> (2 * (16 - CELL_ORDER))]
    incremental = _objects(home)
    rebuild_objects(home)
    assert _objects(home).equals(incremental)


def test_the_objects_step_first_gives_back_what_arrows_pool_holds_free(tmp_path, monkeypatch):
    """After a run's images, Arrow's pool (mimalloc) holds what their tables freed: it goes back
    to the system before DuckDB adds its own (the peak of a `skysift run` process)."""
    from skysift.catalog import objects as objects_module

    released, pool = [], pa.default_memory_pool()

    class Spy:
        def release_unused(self):
            released.append(True)
            pool.release_unused()

    monkeypatch.setattr(objects_module.pa, "default_memory_pool", Spy)
    monkeypatch.setattr(objects_module, "rebuild_objects", lambda home, radius_arcsec: "rebuilt")
    assert objects_module.update_objects(tmp_path, ["img"]) == "rebuilt" and released == [True]


def _random_set(rng: np.random.Generator, n: int, prefix: str) -> pa.Table:
    """``n`` detections in a few clumps (arcseconds apart: several objects, chains), over 3 images and 2 bands."""
    centre = rng.uniform(0, 360), rng.uniform(-60, 60)
    clump = rng.integers(0, 4, n)
    times = [datetime(2026, 1, 1 + int(d)) for d in rng.integers(0, 3, n)]
    return pa.table({
        "source_id": [f"{prefix}{i:03d}" for i in rng.permutation(n)],
        "image_id": [f"img{int(d)}" for d in rng.integers(0, 3, n)],
        "obs_time": pa.array(times, pa.timestamp("us", tz="UTC")),
        "band": rng.choice(["g", "r", None], n).tolist(),
        "ra": centre[0] + (clump * 5 + rng.normal(0, 0.5, n)) / 3600,
        "dec": centre[1] + rng.normal(0, 0.5, n) / 3600,
        "mag_ab": pa.array(np.where(rng.random(n) < 0.2, np.nan, rng.normal(20, 1, n)), pa.float32(), from_pandas=True),
        "mag_ab_err": pa.array(rng.uniform(0.01, 0.1, n), pa.float32()),
        "flags": pa.array(rng.integers(0, 3, n), pa.int32()),
    })


def test_summarize_with_groups_gives_each_set_the_rows_it_gives_alone():
    """Alert packets summarize the detection set of every alert of an image in one call
    (``groups``: each set's friends-of-friends labels, kept apart): every object's row is
    the one its set alone gives, even when sets share detections and overlap on the sky."""
    from skysift.catalog.objects import associate, summarize

    rng = np.random.default_rng(15)
    sets = [_random_set(rng, int(n), "s") for n in rng.integers(1, 40, 12)]
    sets.append(sets[3].slice(0, 5))  # shares source_ids and positions with another set
    radius = 1.0
    groups, offset = [], 0
    for table in sets:
        labels = associate(table["ra"].to_numpy(), table["dec"].to_numpy(), radius)
        groups.append(labels + offset)
        offset += int(labels.max()) + 1
    together, member_of = summarize(pa.concat_tables(sets), radius, groups=np.concatenate(groups))
    start = 0
    for table in sets:
        alone, alone_member_of = summarize(table, radius)
        for k in range(table.num_rows):
            assert together.slice(int(member_of[start + k]), 1).to_pylist() == \
                alone.slice(int(alone_member_of[k]), 1).to_pylist()
        start += table.num_rows


# -- the two readers of the sources table --------------------------------------------------------------
def _write_random_home(home, rng: np.random.Generator, n_images: int, older: bool = False) -> list[str]:
    """``n_images`` images of random detections over 2 bands, 2 nights and 2 sky cells: clumps
    arcseconds apart across a cell edge, flags clean or not, some without a position.
    ``older``: the first image's file has no ``mag_ab_err`` column (written before there was one;
    the others have it, from which DuckDB's ``union_by_name`` takes the column)."""
    dec, edge = 2.2, _edge(2.2)
    ids = []
    for k in range(n_images):
        n = int(rng.integers(0, 30))
        image_id, band, night = f"img{k:02d}", str(rng.choice(["g", "r"])), f"2026-01-0{rng.integers(1, 3)}"
        ra = edge + (rng.integers(-2, 3, n) * 4 + rng.normal(0, 0.6, n)) / 3600
        de = dec + rng.normal(0, 0.6, n) / 3600
        no_position = rng.random(n) < 0.1
        row = ImageRecord(image_id=image_id, status="ok", route="local", survey="prop", band=band, obs_night=night,
                          center_ra=edge, center_dec=dec, radius_deg=10 / 3600)
        sources = pa.table({
            "image_id": pa.array([image_id] * n, pa.string()),
            "source_id": pa.array([f"{image_id}:{i}" for i in range(n)], pa.string()),
            "obs_time": pa.array([datetime.fromisoformat(f"{night}T0{k % 10}:00:00+00:00")] * n,
                                 pa.timestamp("us", tz="UTC")),
            "ra": pa.array(np.where(no_position, np.nan, ra), from_pandas=True),
            "dec": pa.array(de), "mag_ab": pa.array(rng.normal(20, 1, n), pa.float32()),
            "mag_ab_err": pa.array(rng.uniform(0.01, 0.1, n), pa.float32()),
            "flags": pa.array(rng.choice([0, 0, 0, 1, CLEAN_MASK & -CLEAN_MASK], n), pa.int32()),
            "healpix": pa.array(np.where(no_position, 0, healpix_index(np.nan_to_num(ra), de)), pa.int64()),
        })
        LocalTables(home).write_image(row, sources.drop_columns(["mag_ab_err"]) if older and k == 0 < n_images - 1 else sources)
        ids.append(image_id)
    return ids


def _by_source(table: pa.Table) -> list[dict]:
    return sorted(table.to_pylist(), key=lambda row: row["source_id"])


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_images=st.integers(1, 6), older=st.booleans())
def test_a_few_files_read_by_pyarrow_give_what_duckdb_gives(tmp_path_factory, seed, n_images, older):
    """A small sources table is read file by file (no DuckDB): the same clean detections, cells,
    footprints and objects as through DuckDB, the reader of larger tables."""
    from skysift.catalog import objects as objects_module

    home = tmp_path_factory.mktemp("readers")
    ids = _write_random_home(home, np.random.default_rng(seed), n_images, older)
    direct = _Sources(home)
    original = objects_module.DIRECT_READ_FILES
    objects_module.DIRECT_READ_FILES = -1  # every table is "large"
    try:
        queried = _Sources(home)
    finally:
        objects_module.DIRECT_READ_FILES = original
    assert direct._catalog is None and queried._catalog is not None
    assert direct.cells() == queried.cells()
    for cells in (None, set(direct.cells()[:1]), {0}):
        (mine, my_cells), (theirs, their_cells) = direct.clean(cells), queried.clean(cells)
        assert mine.column_names == theirs.column_names
        assert _by_source(mine) == _by_source(theirs)
        assert sorted(my_cells.tolist()) == sorted(their_cells.tolist())
    assert sorted(direct.footprints(ids)) == sorted(queried.footprints(ids))
    written = []
    for sources in (direct, queried):
        root = home / f"objects-{len(written)}"
        _recompute(sources, root, set(sources.cells()), 1.0)
        written.append({p.parent.name: pa.parquet.read_table(p) for p in sorted(root.glob("*/*.parquet"))})
    assert written[0].keys() == written[1].keys()
    assert all(written[0][cell].equals(written[1][cell]) for cell in written[0])


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_images=st.integers(1, 6))
def test_a_rebuild_in_one_pass_writes_what_batches_of_one_cell_write(tmp_path_factory, seed, n_images):
    """A table read whole is rebuilt in one pass (its detections are in memory already); through
    DuckDB, in batches of cells: the same files, and the count of objects the files hold."""
    from skysift.catalog import objects as objects_module

    written, counts = [], []
    for direct in (True, False):
        home = tmp_path_factory.mktemp("rebuild")
        _write_random_home(home, np.random.default_rng(seed), n_images)
        original = objects_module.DIRECT_READ_FILES
        objects_module.DIRECT_READ_FILES = original if direct else -1
        try:
            report = rebuild_objects(home, batch_cells=1)
        finally:
            objects_module.DIRECT_READ_FILES = original
        counts.append((report.objects, catalog_count(home)))
        written.append({p.parent.name: pa.parquet.read_table(p) for p in sorted(objects_root(home).glob("*/*.parquet"))})
    assert written[0].keys() == written[1].keys()
    assert all(written[0][cell].equals(written[1][cell]) for cell in written[0])
    assert counts[0][0] == counts[0][1] == counts[1][0] == counts[1][1]


def test_a_cell_that_cannot_be_written_fails_the_step_after_the_others(tmp_path, monkeypatch):
    """The cells' files are written a few at a time: one write's failure is the step's (the
    others are done, each whole, before it raises)."""
    from skysift.catalog import objects as objects_module

    home = tmp_path / "home"
    _write_random_home(home, np.random.default_rng(3), 6)
    real_write = objects_module._write_cell
    done = []

    def refuse_one(root, cell, objects):
        if not done:
            done.append(None)
            raise OSError(28, "No space left on device")
        real_write(root, cell, objects)
        done.append(cell)

    monkeypatch.setattr(objects_module, "_write_cell", refuse_one)
    with pytest.raises(OSError, match="No space left"):
        rebuild_objects(home)
    for cell in done[1:]:
        assert pa.parquet.read_table(objects_root(home) / f"sky_cell={cell}" / "objects.parquet").num_rows > 0


def test_a_damaged_sources_file_read_directly_is_named_in_one_line(tmp_path):
    from skysift.catalog.integrity import DamagedTable

    home = tmp_path / "home"
    _write_random_home(home, np.random.default_rng(3), 2)
    victim = sorted((home / "tables" / "sources").glob("*/*/*/*.parquet"))[0]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    with pytest.raises(DamagedTable, match=f"table file {victim} is damaged .*check --repair") as caught:
        update_objects(home, ["img00"])
    assert "\n" not in str(caught.value)


def test_a_sources_file_replaced_while_read_directly_is_listed_and_read_again(tmp_path, monkeypatch):
    """Another writer replaced (or compacted) a file between the listing and its read: the
    listing is made again, and no detection is left out."""
    from skysift.catalog import objects as objects_module

    home = tmp_path / "home"
    _write_random_home(home, np.random.default_rng(8), 3)
    expected = _by_source(_Sources(home).clean(None)[0])
    read, calls = objects_module.read_parquet, []

    def replaced_once(path, columns=None):
        calls.append(path)
        if len(calls) == 2:
            raise FileNotFoundError(path)
        return read(path, columns=columns)

    monkeypatch.setattr(objects_module, "read_parquet", replaced_once)
    assert _by_source(_Sources(home).clean(None)[0]) == expected
    assert len(calls) == 2 + 3  # the second file missed once: the listing made and all three read again


def _objects_files(home) -> dict[str, pa.Table]:
    return {path.parent.name: pyarrow.parquet.read_table(path) for path in sorted(objects_root(home).glob("*/objects.parquet"))}


def test_a_pooled_runs_objects_are_updated_in_a_process_of_its_own_beside_its_alerts(tmp_path, monkeypatch, make_sky):
    """After a pool's measuring, ``run_local(objects=True)`` updates the objects in a process of its
    own while this one raises the alerts; a single image's run in this process. The objects are
    those the step computes in this process afterwards."""
    from skysift.pipeline import survey
    from skysift.settings import Settings

    marks = tmp_path / "marks"
    marks.mkdir()
    real = survey._update_objects

    def marked(*args):
        (marks / str(os.getpid())).touch()
        return real(*args)

    monkeypatch.setattr(survey, "_update_objects", marked)
    files = [str(make_sky(f"f{k}.fits", size=256, seed=k)[0]) for k in range(3)]
    settings = Settings.load(home=tmp_path / "home")
    report = survey.run_local(files, settings, workers=2, objects=True)
    assert report.objects_error is None and report.objects.cells >= 1 and report.objects.objects > 0
    [pid] = [p.name for p in marks.iterdir()]
    assert pid != str(os.getpid())
    written = _objects_files(settings.home)
    again = update_objects(settings.home, [s.image_id for s in report.summaries])
    assert (again.cells, again.objects) == (report.objects.cells, report.objects.objects)
    assert _objects_files(settings.home).keys() == written.keys()
    assert all(_objects_files(settings.home)[cell].equals(table) for cell, table in written.items())
    for mark in marks.iterdir():
        mark.unlink()
    one = survey.run_local([str(make_sky("g.fits", size=256, seed=9)[0])], settings, workers=2, objects=True)
    assert one.objects_error is None and [p.name for p in marks.iterdir()] == [str(os.getpid())]


def test_an_objects_step_that_dies_or_fails_is_reported_and_the_images_stay(tmp_path, monkeypatch, make_sky):
    """The objects process killed (the kernel's OOM killer) or failing: the run's report holds why,
    every image stays measured, and ``skysift run`` says it in one line and exits 1."""
    import signal

    from skysift.catalog.integrity import DamagedTable
    from skysift.errors import WorkerDied
    from skysift.pipeline import survey
    from skysift.settings import Settings

    folder = tmp_path / "sky"
    folder.mkdir()
    files = [str(make_sky(f"sky/f{k}.fits", size=256, seed=k)[0]) for k in range(2)]
    monkeypatch.setattr(survey, "_update_objects", lambda *args: os.kill(os.getpid(), signal.SIGKILL))
    report = survey.run_local(files, Settings.load(home=tmp_path / "home"), workers=2, objects=True)
    assert isinstance(report.objects_error, WorkerDied) and report.objects is None
    assert "the process updating the objects was killed by SIGKILL" in str(report.objects_error)
    assert report.count("ok") == 2

    def damaged(*args):
        raise DamagedTable("sources/x.parquet: not a Parquet file")

    monkeypatch.setattr(survey, "_update_objects", damaged)
    result = CliRunner().invoke(cli, ["--home", str(tmp_path / "home2"), "run", str(folder)])
    assert result.exit_code == 1, result.output
    assert "objects not updated: sources/x.parquet: not a Parquet file" in result.output
    assert "2 ok, 0 indexed, 0 failed" in result.output
