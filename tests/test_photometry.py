"""Windowed positions stay on their own source (issue 14: one source, one row)."""

from __future__ import annotations

import numpy as np
import pytest

from skysift.detection import detect
from skysift.photometry import measure, stays_on_source
from skysift.settings import DetectionSettings, PhotometrySettings

BRIGHT = (100.0, 100.0, 40_000.0)  # x, y (px), flux (counts)


def _two_stars(faint_x: float, faint_flux: float, seed: int = 0) -> np.ndarray:
    """Unit white noise with a bright Gaussian star (sigma 1.3 px) and a faint one beside it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:200, :200]
    frame = rng.normal(0.0, 1.0, (200, 200))
    for x, y, flux in (BRIGHT, (faint_x, 100.3, faint_flux)):
        frame += flux / (2 * np.pi * 1.3**2) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.3**2))
    return frame.astype(np.float32)


@pytest.mark.parametrize(("faint_x", "faint_flux"), [(110.0, 1000.0), (112.0, 300.0), (112.0, 1000.0), (114.0, 300.0)])
def test_a_faint_star_beside_a_bright_one_keeps_its_own_position(faint_x, faint_flux):
    """The neighbour's light inflates the faint star's half-light radius, hence its window,
    which then walked 7-9 px onto the bright star (one source listed twice, on real skies)."""
    frame = _two_stars(faint_x, faint_flux)
    objects = detect(frame, np.float32(1.0), None, DetectionSettings(), noise_factor=1.0).objects
    columns = measure(frame, objects, np.ones(frame.shape, np.float32), None, PhotometrySettings())
    assert len(objects) == 2
    order = np.argsort(columns["x"])
    assert columns["x"][order] == pytest.approx([BRIGHT[0], faint_x], abs=0.3)
    assert columns["y"][order] == pytest.approx([BRIGHT[1], 100.3], abs=0.3)


def test_a_position_is_off_its_source_beyond_its_isophote_or_nearer_another_peak():
    dtype = [("x", float), ("y", float), ("a", float), ("xpeak", int), ("ypeak", int)]
    objects = np.array([(10.0, 10.0, 2.0, 10, 10), (20.0, 10.0, 0.5, 20, 10)], dtype=dtype)
    assert stays_on_source(objects, np.array([11.5, 20.8]), np.array([10.0, 10.0])).tolist() == [True, True]
    assert stays_on_source(objects, np.array([12.5, 21.2]), np.array([10.0, 10.0])).tolist() == [False, False]
    # within the isophote, but nearer a neighbour's peak than its own
    near = np.array([(10.0, 10.0, 8.0, 10, 10), (20.0, 10.0, 2.0, 20, 10)], dtype=dtype)
    assert stays_on_source(near, np.array([16.0, 20.0]), np.array([10.0, 10.0])).tolist() == [False, True]
    # a neighbour given apart (beyond a strip's core) counts as well
    assert not stays_on_source(near[:1], np.array([16.0]), np.array([10.0]), neighbours=near)[0]
