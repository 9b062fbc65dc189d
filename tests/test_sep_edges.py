"""SEP's edges: a theta just above pi/2, degenerate shapes, and its process-wide limits.

SEP rejects a whole aperture call when one source's ellipse is out of range, and keeps
its pixel-stack and sub-object limits in globals. These tests pin skysift's answers:
every source is measured (a degenerate one flagged), and SEP's globals are left as found.
"""

from __future__ import annotations

import numpy as np
import pytest
import sep

from edge_skies import LINE_FLUX, LINE_X, LINE_Y, write_line_sky
from skysift.core import flags as F
from skysift.core.background import subtract_sky
from skysift.core.detection import detect, sep_limits
from skysift.core.photometry import measure, sep_ellipses
from skysift.io.fits import read_image
from skysift.measure.frame import measure_pixels
from skysift.pipeline.image import process_image
from skysift.settings import Settings


@pytest.fixture
def line_pixels(tmp_path):
    """The line image background-subtracted, and SEP's detections on it, as the pipeline makes them."""
    image = read_image(str(write_line_sky(tmp_path / "line.fits")))
    settings = Settings.load(home=tmp_path / "home")
    bkg, mask = subtract_sky(image.data, image.mask, settings.background)
    return image.data, bkg, mask, detect(image.data, bkg.rms, mask, settings.detection).objects, settings


def _line_row(x, y) -> int:
    [row] = np.flatnonzero(np.hypot(np.asarray(x) - LINE_X, np.asarray(y) - LINE_Y) < 1.0)
    return int(row)


def test_sep_gives_a_one_pixel_wide_vertical_object_a_theta_its_own_apertures_reject(line_pixels):
    """The upstream edge (SEP #110) this module guards against is real with the installed SEP."""
    data, bkg, mask, objects, _ = line_pixels
    line = objects[_line_row(objects["x"], objects["y"])]
    assert line["theta"] > np.pi / 2  # float32(pi/2) = 1.5707963705 > 1.5707963268
    with pytest.raises(Exception, match="invalid aperture parameters"):
        sep.sum_ellipse(data, objects["x"], objects["y"], objects["a"], objects["b"], objects["theta"], 2.5,
                        err=bkg.rms, mask=mask)


def test_one_pixel_wide_vertical_object_is_measured_with_the_rest(line_pixels):
    data, bkg, mask, objects, settings = line_pixels
    columns = measure(data, objects, bkg.rms, mask, settings.photometry)
    assert len(columns["x"]) == len(objects)  # nothing lost
    row = _line_row(columns["x"], columns["y"])
    assert columns["flux"][row] >= 0.95 * LINE_FLUX  # the whole segment (SEP scales up for masked pixels)
    assert columns["snr"][row] > 100
    assert columns["flags"][row] & F.SINGULAR  # SEP's own flag for a moment matrix of rank one
    assert np.isfinite(columns["flux"]).all()


def test_the_image_that_stopped_runs_is_cataloged(tmp_path):
    """`skysift run sky --threshold 3` stopped on such a source; now the image is ok with it in the catalog."""
    path = write_line_sky(tmp_path / "line.fits")
    result = process_image(str(path), Settings.load(home=tmp_path / "home", detection__threshold_sigma=3.0))
    assert result.record.status == "ok", result.record.error_message
    sources = result.sources.to_pydict()
    row = _line_row(sources["x"], sources["y"])
    assert sources["flux"][row] >= 0.95 * LINE_FLUX


@pytest.mark.parametrize(("a", "b", "theta"), [
    (0.0, 0.0, 0.3), (np.nan, 1.0, 0.3), (2.0, np.nan, 0.3), (2.0, 1.0, np.nan), (np.inf, 1.0, 0.0), (-1.0, 1.0, 0.0),
], ids=["zero", "nan-a", "nan-b", "nan-theta", "inf-a", "negative-a"])
def test_a_degenerate_shape_is_flagged_and_does_not_cost_the_others_their_photometry(line_pixels, a, b, theta):
    data, bkg, mask, objects, settings = line_pixels
    objects = objects.copy()
    objects["theta"] = np.clip(objects["theta"], -np.pi / 2, np.pi / 2)  # only the shape under test is bad
    clean = measure(data, objects, bkg.rms, mask, settings.photometry)
    row = _line_row(objects["x"], objects["y"])
    objects["a"][row], objects["b"][row], objects["theta"][row] = a, b, theta

    damaged = measure(data, objects, bkg.rms, mask, settings.photometry)

    others = np.arange(len(objects)) != row
    np.testing.assert_array_equal(damaged["flux"][others], clean["flux"][others])
    assert damaged["flags"][row] & F.SINGULAR
    assert np.isfinite(damaged["flux"][row]) and damaged["flux"][row] > 0.1 * LINE_FLUX  # measured in a circle


def test_sep_ellipses_only_clip_theta_and_order_the_axes():
    half_pi32 = np.float64(np.float32(np.pi / 2))
    a, b, theta, degenerate = sep_ellipses(np.array([3.0, 2.0]), np.array([1.0, 2.0 + 1e-12]),
                                           np.array([half_pi32, -half_pi32]))
    assert theta.tolist() == [np.pi / 2, -np.pi / 2]
    assert a.tolist() == [3.0, 2.0] and b.tolist() == [1.0, 2.0]
    assert not degenerate.any()


def test_sep_limits_are_as_found_after_skysift_measures_an_image(truth_sky):
    """A caller's own SEP limits survive skysift (which sets small stacks for blend cut-outs)."""
    path, _, _ = truth_sky
    image = read_image(str(path))
    sep.set_extract_pixstack(1_234_567)
    sep.set_sub_object_limit(2048)
    try:
        pixels = measure_pixels(image.data, image.mask, image.header, Settings.load())
        assert (pixels.columns["flags"] & F.MERGED).any()  # blends were isolated: cut-outs were extracted
        assert (sep.get_extract_pixstack(), sep.get_sub_object_limit()) == (1_234_567, 2048)
    finally:
        sep.set_extract_pixstack(300_000)
        sep.set_sub_object_limit(1024)


def test_sep_limits_are_restored_when_the_block_raises():
    before = sep.get_extract_pixstack(), sep.get_sub_object_limit()
    with pytest.raises(RuntimeError), sep_limits(pixel_stack=5_000_000, sub_object_limit=8192):
        assert (sep.get_extract_pixstack(), sep.get_sub_object_limit()) == (5_000_000, 8192)
        raise RuntimeError("SEP failed")
    assert (sep.get_extract_pixstack(), sep.get_sub_object_limit()) == before
