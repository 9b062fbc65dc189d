"""`skysift compact`: fewer files, the same rows, and replace-by-image_id still holds."""

from __future__ import annotations

from skysift.alerts.log import LogPublisher
from skysift.catalog.query import LocalCatalog
from skysift.catalog.tables import LocalTables
from skysift.pipeline.image import ingest_image


def test_compaction_keeps_rows_and_later_rewrites_replace_them(make_sky, settings):
    paths = [make_sky(f"c{i}.fits", seed=i, size=256, n_stars=40, n_galaxies=5)[0] for i in range(4)]
    store, publisher = LocalTables(settings.home), LogPublisher(settings.home)
    for path in paths:
        ingest_image(str(path), settings, store=store, publisher=publisher)
    query = "SELECT image_id, COUNT(*) n, SUM(flux) f FROM sources GROUP BY image_id ORDER BY image_id"
    before = LocalCatalog(settings.home).sql(query)
    report = store.compact()
    assert report["sources"].files_before == 4 and report["sources"].files_after == 1
    assert len(list((settings.home / "tables" / "sources").rglob("*.parquet"))) == 1
    assert LocalCatalog(settings.home).sql(query).equals(before)
    ingest_image(str(paths[0]), settings, store=store, publisher=publisher)  # re-run one compacted image
    after = LocalCatalog(settings.home).sql(query)
    assert after.equals(before)
    images = LocalCatalog(settings.home).sql("SELECT COUNT(*) n, COUNT(DISTINCT image_id) d FROM images")
    assert images["n"][0] == images["d"][0] == 4
    row = store.image(LocalCatalog(settings.home).sql("SELECT image_id FROM images")["image_id"][1])
    assert store.read_sources(row).num_rows == before.set_index("image_id").loc[row.image_id, "n"]
