"""Pictures people would rather look at than tables (matplotlib, headless Agg)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pyarrow as pa
from astropy.visualization import ImageNormalize, ZScaleInterval
from matplotlib.patches import Ellipse

from .fitsio import Image


def detections_overlay(image: Image, sources: pa.Table | None, out_path: str, *, title: str | None = None,
                       max_ellipses: int = 5000) -> str:
    """The image (zscale) with each detection's Kron ellipse, coloured by star/galaxy score."""
    fig = plt.figure(figsize=(9, 8))
    ax = fig.add_subplot(111, projection=image.wcs) if image.wcs is not None else fig.add_subplot(111)
    norm = ImageNormalize(np.nan_to_num(image.data, nan=np.nanmedian(image.data)), interval=ZScaleInterval())
    ax.imshow(image.data, origin="lower", cmap="gray", norm=norm, interpolation="nearest")
    n = 0 if sources is None else sources.num_rows
    if n:
        cols = sources.select(["x", "y", "a", "b", "theta", "kron_radius", "star_score"]).to_pydict()
        cmap = plt.get_cmap("coolwarm_r")
        for i in range(min(n, max_ellipses)):
            scale = max(2.5 * (cols["kron_radius"][i] or 1.0), 3.5)
            score = cols["star_score"][i]
            colour = cmap(score if score is not None and np.isfinite(score) else 0.5)
            ax.add_patch(Ellipse((cols["x"][i], cols["y"][i]), 2 * scale * cols["a"][i], 2 * scale * cols["b"][i],
                                 angle=np.degrees(cols["theta"][i]), fill=False, lw=0.7, color=colour))
        sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 1))
        fig.colorbar(sm, ax=ax, fraction=0.046, pad=0.04, label="star score (1 = point source)")
    if image.wcs is not None:
        ax.set_xlabel("RA (ICRS)")
        ax.set_ylabel("Dec (ICRS)")
    ax.set_title(title or f"{image.info.uri.rsplit('/', 1)[-1]}: {n} detections")
    fig.savefig(out_path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out_path
