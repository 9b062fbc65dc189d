"""The large-image path: tiles with overlap agree with the whole image, seams add nothing."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from skysift.core import flags as F
from skysift.errors import ConfigError
from skysift.measure.tiled import measure_tiled, pixels_for_memory, plan_tiles, tile_size_for_memory
from skysift.pipeline.image import process_image
from skysift.pipeline.router import in_memory_pixel_limit
from skysift.settings import Settings


def test_tile_cores_cover_the_image_exactly_once():
    tiles = plan_tiles(1000, 700, 256, 64)
    cover = np.zeros((700, 1000), int)
    for t in tiles:
        cover[t.y0 : t.y1, t.x0 : t.x1] += 1
        assert t.rx0 == max(0, t.x0 - 64) and t.ry1 == min(700, t.y1 + 64)
    assert (cover == 1).all()


def test_a_budget_too_small_for_any_tile_is_a_clear_error():
    with pytest.raises(ConfigError, match="raise --max-memory"):
        tile_size_for_memory(2**28, workers=4, margin_px=256, box_px=64)


def test_memory_model_inverts():
    side = tile_size_for_memory(2**30, workers=2, margin_px=256, box_px=64)
    assert side % 64 == 0 and (side + 512) ** 2 <= pixels_for_memory(2**29)


@pytest.fixture(scope="module")
def whole_and_tiled(truth_sky, tmp_path_factory):
    path, _, _ = truth_sky
    settings = Settings.load(home=tmp_path_factory.mktemp("t"))
    whole = process_image(str(path), settings).sources.to_pandas()
    _, tiled, _ = measure_tiled(str(path), settings, tile_px=256, workers=2)
    return whole, tiled


def test_tiled_catalog_matches_the_whole_image(whole_and_tiled):
    whole, tiled = whole_and_tiled
    cols = tiled.columns
    assert tiled.stats["n_tiles"] == 16
    dist, index = cKDTree(np.c_[cols["x"], cols["y"]]).query(np.c_[whole["x"], whole["y"]])
    same = (dist < 0.01) & (np.abs(cols["flux"][index] / whole["flux"] - 1) < 0.001)
    one_to_one = len(np.unique(index[same])) == same.sum()
    assert one_to_one and same.mean() >= 0.995 and len(cols["x"]) == len(whole)
    # blends too: each is deblended on its own, whatever the tile scanned before it
    blended = (whole["flags"].to_numpy() & F.MERGED) != 0
    assert blended.sum() > 10 and same[blended].mean() >= 0.99


def test_no_source_is_doubled_at_a_seam(whole_and_tiled):
    whole, tiled = whole_and_tiled
    pairs = cKDTree(np.c_[tiled.columns["x"], tiled.columns["y"]]).query_pairs(0.5)
    whole_pairs = cKDTree(np.c_[whole["x"], whole["y"]]).query_pairs(0.5)
    assert len(pairs) <= len(whole_pairs)
    # seams run along x or y = 256 k: nothing piles up beside them
    x = tiled.columns["x"]
    near_seam = np.abs(((x + 128) % 256) - 128) < 2
    assert near_seam.mean() < 2 * 4 / 256 + 0.01


def test_large_images_take_the_tiled_route_within_the_budget(make_sky, tmp_path):
    path, _ = make_sky("big.fits", size=1536, n_stars=300, n_galaxies=50)
    settings = Settings.load(home=tmp_path, limits={"max_memory_bytes": 2**28})
    assert in_memory_pixel_limit(settings) < 1536**2
    result = process_image(str(path), settings, workers=1)
    assert result.ok and result.record.route == "large"
    assert result.record.n_sources > 200 and result.record.seeing_fwhm_px is not None
    roomy = process_image(str(path), Settings.load(home=tmp_path))
    assert roomy.record.route == "local"
    assert abs(result.record.n_sources - roomy.record.n_sources) <= 3


def test_all_nan_large_image_is_the_same_typed_error_as_in_memory(tmp_path):
    from astropy.io import fits

    from skysift.errors import AllNaN

    path = tmp_path / "blank.fits"
    fits.writeto(path, np.full((600, 600), np.nan, np.float32))
    with pytest.raises(AllNaN):
        measure_tiled(str(path), Settings.load(home=tmp_path), tile_px=256)
