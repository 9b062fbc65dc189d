"""Accuracy of skysift and Source Extractor on the same synthetic images with known truth.

Two skies: the 4096^2 bench sky (4,000 stars, 1,000 galaxies) and the 1024^2 crowded sky
that ``tests/test_accuracy.py`` renders (2,500 stars, 500 galaxies, seed 14: the same
pixels), each measured by both in the same run.

Run: ``.venv/bin/python benchmarks/bench_accuracy.py``
"""

from __future__ import annotations

import json
import tempfile

import numpy as np

from accuracy import crowded_figures, figures
from common import SEX, run_source_extractor, synthetic_image
from skysift.core.detection import gaussian_kernel
from skysift.pipeline.image import process_image
from skysift.settings import Settings

#: name, side (px), stars, galaxies, seed
SKIES = [("bench_4k", 4096, 4000, 1000, 1), ("crowded_1k", 1024, 2500, 500, 14)]


def measure_sky(name: str, size: int, n_stars: int, n_galaxies: int, seed: int) -> dict:
    path, truth = synthetic_image(name, size, n_stars=n_stars, n_galaxies=n_galaxies, seed=seed)
    cat = process_image(str(path), Settings.load(home=tempfile.mkdtemp())).sources.to_pandas()
    out = {"skysift": figures(cat["x"], cat["y"], cat["flux"], truth, size, size, 3.0),
           "skysift_crowded": crowded_figures(cat["x"], cat["y"], cat["flux"], truth, size, size)}
    if SEX:
        threshold = 5.0 * float(np.sqrt((gaussian_kernel(3.0) ** 2).sum()))
        se = run_source_extractor(path, 1, threshold)
        out["source_extractor"] = figures(se["XWIN_IMAGE"] - 1, se["YWIN_IMAGE"] - 1, se["FLUX_AUTO"], truth,
                                          size, size, 3.0)
        out["source_extractor_crowded"] = crowded_figures(se["XWIN_IMAGE"] - 1, se["YWIN_IMAGE"] - 1,
                                                          se["FLUX_AUTO"], truth, size, size)
    return out


def main() -> dict:
    out = {name: measure_sky(name, *rest) for name, *rest in SKIES}
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
