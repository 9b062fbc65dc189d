"""Accuracy of skysift and Source Extractor on the same synthetic image with known truth.

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


def main() -> dict:
    path, truth = synthetic_image("bench_4k", 4096, n_stars=4000, n_galaxies=1000)
    cat = process_image(str(path), Settings.load(home=tempfile.mkdtemp())).sources.to_pandas()
    out = {"skysift": figures(cat["x"], cat["y"], cat["flux"], truth, 4096, 4096, 3.0),
           "skysift_crowded": crowded_figures(cat["x"], cat["y"], cat["flux"], truth, 4096, 4096)}
    if SEX:
        threshold = 5.0 * float(np.sqrt((gaussian_kernel(3.0) ** 2).sum()))
        se = run_source_extractor(path, 1, threshold)
        out["source_extractor"] = figures(se["XWIN_IMAGE"] - 1, se["YWIN_IMAGE"] - 1, se["FLUX_AUTO"], truth, 4096, 4096, 3.0)
        out["source_extractor_crowded"] = crowded_figures(se["XWIN_IMAGE"] - 1, se["YWIN_IMAGE"] - 1, se["FLUX_AUTO"],
                                                          truth, 4096, 4096)
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
