"""Accuracy figures shared by the tests' definitions and the benchmark report.

Isolated point sources: injected stars with true SNR >= 10, no other injected source
within 5 FWHM, at least 5 px from the edges. A detection matches when it lies within
1 px of the injected position (completeness) or within 1 FWHM of any injected source
(purity). Stars with a neighbour (:func:`crowded_figures`): injected stars with another
injected source within 8 px, whose Kron flux the neighbour's light can bias (issue 14).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def figures(x, y, flux, truth: dict, nx: int, ny: int, fwhm_px: float) -> dict[str, float]:
    txy = np.c_[truth["x"], truth["y"]]
    neighbour = cKDTree(txy).query(txy, k=2)[0][:, 1]
    edge = (truth["x"] > 5) & (truth["y"] > 5) & (truth["x"] < nx - 6) & (truth["y"] < ny - 6)
    isolated = (truth["kind"] == "star") & (neighbour > 5 * fwhm_px) & edge & (truth["snr_true"] >= 10)
    dist, index = cKDTree(np.c_[x, y]).query(txy)
    found = isolated & (dist < 1.0)
    ratio = np.asarray(flux)[index[found]] / truth["flux"][found]
    nearest, _ = cKDTree(txy).query(np.c_[x, y])
    return {
        "isolated_point_sources": int(isolated.sum()),
        "completeness": float(found.sum() / isolated.sum()),
        "median_abs_flux_error": float(np.median(np.abs(ratio - 1))),
        "median_flux_ratio": float(np.median(ratio)),
        "median_position_error_px": float(np.median(dist[found])),
        "purity": float((nearest < fwhm_px).mean()),
        "detections": len(x),
    }


def crowded_figures(x, y, flux, truth: dict, nx: int, ny: int, neighbour_px: float = 8.0,
                    min_snr: float = 10.0) -> dict[str, float]:
    """Kron fluxes of stars with a neighbour: injected stars with true SNR >= ``min_snr``, >= 5 px
    from the edges, with another injected source (star or galaxy) within ``neighbour_px``;
    found within 1 px. Off: |flux/true - 1| > 0.1."""
    txy = np.c_[truth["x"], truth["y"]]
    neighbour = cKDTree(txy).query(txy, k=2)[0][:, 1]
    edge = (truth["x"] > 5) & (truth["y"] > 5) & (truth["x"] < nx - 6) & (truth["y"] < ny - 6)
    crowded = (truth["kind"] == "star") & (neighbour <= neighbour_px) & edge & (truth["snr_true"] >= min_snr)
    dist, index = cKDTree(np.c_[x, y]).query(txy)
    found = crowded & (dist < 1.0)
    ratio = np.asarray(flux)[index[found]] / truth["flux"][found]
    return {
        "stars_with_neighbour": int(crowded.sum()),
        "found": int(found.sum()),
        "off": int(np.sum(np.abs(ratio - 1) > 0.1)),
        "off_by_10pct": float(np.mean(np.abs(ratio - 1) > 0.1)),
        "median_abs_flux_error": float(np.median(np.abs(ratio - 1))),
    }
