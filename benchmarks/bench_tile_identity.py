"""Whole image vs tiles vs strips on the same 4096 x 4096 image: the same sources, once each.

For each tiling (small tiles forced) and for two strip processes: the fraction of the
whole-image sources matched one to one (position within 0.01 px, flux within 0.1%),
overall and for blended sources, and how many sources are doubled (pairs closer than
0.5 px beyond those in the whole-image catalog).

Run: ``.venv/bin/python benchmarks/bench_tile_identity.py``
"""

from __future__ import annotations

import json
import tempfile

import numpy as np
from scipy.spatial import cKDTree

from common import synthetic_image
from skysift.core import flags as F
from skysift.measure.tiled import measure_tiled
from skysift.pipeline.image import process_image
from skysift.settings import Settings


def agreement(whole: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> dict[str, float]:
    dist, index = cKDTree(np.c_[other["x"], other["y"]]).query(np.c_[whole["x"], whole["y"]])
    same = (dist < 0.01) & (np.abs(other["flux"][index] / whole["flux"] - 1) < 0.001)
    blended = (whole["flags"] & F.MERGED) != 0
    pairs = len(cKDTree(np.c_[other["x"], other["y"]]).query_pairs(0.5))
    whole_pairs = len(cKDTree(np.c_[whole["x"], whole["y"]]).query_pairs(0.5))
    return {"sources": len(other["x"]), "matched_fraction": float(same.mean()),
            "matched_one_to_one": bool(len(np.unique(index[same])) == same.sum()),
            "blended_matched_fraction": float(same[blended].mean()), "doubled": pairs - whole_pairs}


def main() -> dict:
    path, _ = synthetic_image("bench_4k", 4096, n_stars=4000, n_galaxies=1000)
    settings = Settings.load(home=tempfile.mkdtemp())
    whole = {k: v.to_numpy() for k, v in process_image(str(path), settings).sources.to_pandas().items()}
    out = {"whole_sources": len(whole["x"]), "blended": int(((whole["flags"] & F.MERGED) != 0).sum())}
    for tile_px in (512, 1024):
        _, tiled, _ = measure_tiled(str(path), settings, tile_px=tile_px, workers=2)
        out[f"tiles_{tile_px}px"] = agreement(whole, tiled.columns) | {"tiles": tiled.stats["n_tiles"]}
    strips = process_image(str(path), settings, workers=2).sources.to_pandas()
    out["two_strip_processes"] = agreement(whole, {k: v.to_numpy() for k, v in strips.items()})
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
