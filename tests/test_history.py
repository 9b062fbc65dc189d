"""The history the 'new source' rule reads: earlier images and their detections in a cone.

The local store keeps each file's rows in memory while the file is unchanged; these
tests check that what it answers always equals a fresh SQL query over the tables,
after new images, rewrites and compaction.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from skysift.catalog.history import angular_distance_deg
from skysift.catalog.query import LocalCatalog
from skysift.catalog.tables import LocalTables
from skysift.pipeline.image import process_image, record

LATER = datetime(2027, 1, 1, tzinfo=UTC)


def expected_sources(home, ra, dec, radius_deg, before):
    """The reference answer: every earlier ok image's sources in the cone, by SQL."""
    frame = LocalCatalog(home).sql("SELECT s.ra, s.dec, s.image_id FROM sources s JOIN images i USING (image_id) "
                                   "WHERE i.status = 'ok' AND s.obs_time < $before", {"before": before})
    inside = angular_distance_deg(frame["ra"], frame["dec"], ra, dec) <= radius_deg
    return sorted(zip(frame["image_id"][inside], np.round(frame["ra"][inside], 10), strict=True))


def answer(store, ra, dec, radius_deg, before):
    table = store.earlier_sources(ra, dec, radius_deg, before)
    return sorted(zip(table["image_id"].to_pylist(), np.round(table["ra"].to_numpy(), 10), strict=True))


@pytest.fixture
def three_nights(make_sky, settings):
    """One field observed on three nights (same sky and WCS, own DATE-OBS)."""
    rows = []
    store = LocalTables(settings.home)
    for night in range(3):
        path, _ = make_sky(f"night{night}.fits", seed=night, size=256, n_stars=40, n_galaxies=5,
                           header={"DATE-OBS": f"2026-01-0{night + 1}T00:00:00"})
        result = process_image(str(path), settings)
        record(result, store)
        rows.append(result.record)
    return store, rows


def test_earlier_images_and_sources_follow_new_files_rewrites_and_compaction(three_nights, settings):
    store, rows = three_nights
    ra, dec, radius = rows[0].center_ra, rows[0].center_dec, 0.01
    last = rows[2].obs_time
    assert [r.image_id for r in store.earlier_images(ra, dec, radius, last)] == [r.image_id for r in rows[:2]]
    assert [r.image_id for r in store.earlier_images(ra + 1.0, dec, radius, last)] == []
    assert answer(store, ra, dec, radius, last) == expected_sources(settings.home, ra, dec, radius, last)
    in_cone = answer(store, ra, dec, radius, last)
    assert {image_id for image_id, _ in in_cone} == {r.image_id for r in rows[:2]}
    assert 10 < len(in_cone) < rows[0].n_sources + rows[1].n_sources  # the cone cuts the images

    # the same store object sees an image rewritten as failed (its row file replaced)
    store.write_rows("images", rows[1], store_row(rows[1], status="failed"))
    assert [r.image_id for r in store.earlier_images(ra, dec, radius, LATER)] == [rows[0].image_id, rows[2].image_id]
    assert answer(store, ra, dec, radius, LATER) == expected_sources(settings.home, ra, dec, radius, LATER)

    store.compact()  # rows move into compacted files
    assert [r.image_id for r in store.earlier_images(ra, dec, radius, LATER)] == [rows[0].image_id, rows[2].image_id]
    assert answer(store, ra, dec, radius, LATER) == expected_sources(settings.home, ra, dec, radius, LATER)
    assert answer(LocalTables(settings.home), ra, dec, radius, LATER) == answer(store, ra, dec, radius, LATER)


def test_read_sources_follows_rewrites_and_compaction(three_nights, monkeypatch):
    """An image's sources rows are read from its own file once while the file is unchanged,
    and read again after it is replaced; compacted files are read for the image's rows."""
    import pyarrow.parquet as pq

    from skysift.catalog import tables

    rows = three_nights[1]
    reads = []
    real = pq.read_table
    monkeypatch.setattr(tables, "read_parquet", lambda *a, **k: reads.append(a[0]) or real(*a, **k))
    store = LocalTables(three_nights[0].home)
    first = store.read_sources(rows[0])
    assert store.read_sources(rows[0]).equals(first) and len(reads) == 1  # read once
    assert first.equals(real(store._sources_file(rows[0])))

    store.write_rows("sources", rows[0], first.slice(0, 3))  # the image's rows replaced
    assert store.read_sources(rows[0]).num_rows == 3 and len(reads) == 2

    store.compact()
    for row in rows:
        assert store.read_sources(row).equals(LocalTables(store.home)._read_image_file("sources", row))
    assert store.read_sources(rows[0]).num_rows == 3


def store_row(row, **changes):
    return row.replace(**changes).to_table()


def test_file_cache_rereads_replaced_files_and_keeps_within_its_byte_budget(tmp_path):
    import os

    from skysift.catalog.history import FileCache

    reads = []

    def load(path):
        reads.append(path.name)
        return path.read_bytes()

    cache = FileCache(load, max_bytes=10, size=len)
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"123456")
    b.write_bytes(b"abcdef")
    assert cache.get(a) == b"123456" and cache.get(a) == b"123456" and reads == ["a"]
    replacement = tmp_path / "a.tmp"
    replacement.write_bytes(b"654321")  # same size, replaced atomically as the tables do
    os.replace(replacement, a)
    assert cache.get(a) == b"654321" and reads == ["a", "a"]
    cache.get(b)  # 12 bytes > 10: the least recently used entry (a) goes
    cache.get(b)
    cache.get(a)
    assert reads == ["a", "a", "b", "a"]
