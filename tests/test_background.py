"""The background RMS map, the per-pixel detection threshold: never <= 0 (issue 14)."""

from __future__ import annotations

import numpy as np
import sep

from skysift.core.background import estimate_background, rms_floor
from skysift.io.fits import read_image
from skysift.settings import BackgroundSettings


def test_m13_rms_map_has_a_floor_along_its_edges(m13_files):
    """SEP's spline overshoots beyond the outer mesh centres: -2.15 along M13's bottom edge."""
    image = read_image(str(m13_files["plain"]))
    raw = sep.Background(image.data, bw=64, bh=64, fw=3, fh=3).rms()
    assert raw.min() < 0  # what SEP gives
    rms = estimate_background(image.data, None, BackgroundSettings()).rms
    inner = raw[32:-32, 32:-32]
    assert rms.min() == inner[inner > 0].min() > 0
    assert np.array_equal(rms[rms > rms.min()], raw[rms > rms.min()])  # nothing else changes


def test_a_noiseless_frame_still_gets_a_positive_rms():
    rms = estimate_background(np.full((64, 64), 7.0, np.float32), None, BackgroundSettings()).rms
    assert (rms > 0).all()
    assert rms_floor(np.zeros((64, 64), np.float32), 16) > 0
