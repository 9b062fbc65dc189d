"""SEP's limits: crowded frames must not crash, and the result says what happened."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from skysift.core.background import subtract_sky
from skysift.core.detection import (
    _BoxMosaic,
    _grown,
    detect,
    gaussian_kernel,
    narrowest_labels,
    noise_correlation_factor,
)
from skysift.errors import DetectionFailed
from skysift.settings import BackgroundSettings, DetectionSettings


def test_gaussian_kernel_is_normalised_and_odd():
    kernel = gaussian_kernel(3.0)
    assert kernel.shape[0] % 2 == 1 and np.isclose(kernel.sum(), 1.0)


@pytest.fixture
def overfull():
    """360,000 connected pixels above threshold: more than SEP's 300,000-pixel stack."""
    data = np.random.default_rng(0).normal(0, 1, (1000, 1000)).astype(np.float32)
    data[200:800, 200:800] += 1.0  # 4.5 sigma in the filtered image
    return data


def test_pixel_buffer_overflow_retries_at_a_higher_threshold(overfull):
    settings = DetectionSettings(pixel_stack=300_000, threshold_sigma=0.5, min_area_px=1, max_retries=8)
    result = detect(overfull, np.float32(1.0), None, settings)
    assert result.crowded and result.threshold_sigma > 0.5 and len(result.objects) > 0


def test_overflow_beyond_the_retries_is_a_typed_error(overfull):
    settings = DetectionSettings(pixel_stack=300_000, threshold_sigma=0.5, min_area_px=1, max_retries=0)
    with pytest.raises(DetectionFailed, match="too crowded"):
        detect(overfull, np.float32(1.0), None, settings)


def test_large_default_stack_takes_the_same_frame_in_one_pass(overfull):
    result = detect(overfull, np.float32(1.0), None, DetectionSettings(threshold_sigma=0.5, min_area_px=1))
    assert not result.crowded and result.threshold_sigma == 0.5


def test_pixel_stack_grows_when_full_and_finds_what_a_large_one_finds(overfull, monkeypatch):
    """The stack starts small (memory) and grows tenfold on overflow: the objects are those
    a stack of the largest size from the start finds."""
    import skysift.core.detection as detection

    settings = DetectionSettings(threshold_sigma=0.5, min_area_px=1)
    grown = detect(overfull, np.float32(1.0), None, settings)
    monkeypatch.setattr(detection, "INITIAL_PIXEL_STACK", settings.pixel_stack)
    large = detect(overfull, np.float32(1.0), None, settings)
    assert not grown.crowded and len(grown.objects) == len(large.objects)
    for name in ("x", "y", "flux", "npix", "a", "b", "theta"):
        np.testing.assert_array_equal(grown.objects[name], large.objects[name])


def _blended_pairs(rows: list[int], size: int = 400, seed: int = 3) -> np.ndarray:
    """A noisy frame with a pair of overlapping stars (a blend SEP splits) at each row."""
    rng = np.random.default_rng(seed)
    frame = rng.normal(0, 1, (size, size)).astype(np.float32)
    yy, xx = np.mgrid[:size, :size]
    for y in rows:
        for x, amp in ((180.0, 60.0), (189.0, 35.0)):
            frame += (amp * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.8**2))).astype(np.float32)
    return frame


def _children_at(objects: np.ndarray, row: int) -> np.ndarray:
    picked = objects[np.abs(objects["y"] - row) < 10]
    return picked[np.argsort(picked["x"])]


@pytest.mark.parametrize("isolated", [True, False], ids=["isolated", "sep-alone"])
def test_a_blend_splits_the_same_whatever_was_scanned_before_it(monkeypatch, isolated):
    """What tiles and strips rely on: SEP hands a blend's faint pixels out at random, from a
    sequence shared by the whole call; skysift re-deblends each blend on its own."""
    if not isolated:
        monkeypatch.setattr("skysift.core.detection.isolate_blends", lambda d, e, m, objects, *a, **k: objects)
    settings = DetectionSettings(threshold_sigma=3.0)
    alone = _children_at(detect(_blended_pairs([300]), np.float32(1.0), None, settings).objects, 300)
    after_others = detect(_blended_pairs([60, 120, 180, 300]), np.float32(1.0), None, settings).objects
    behind = _children_at(after_others, 300)
    assert len(alone) == 2 and (alone["flag"] & 1).all()  # one blend, split in two
    same = all(np.array_equal(alone[k], behind[k]) for k in ("x", "y", "flux", "npix"))
    assert same is isolated


def _correlated_noise(smoothing_sigma_px: float, size: int = 500, seed: int = 5) -> tuple[np.ndarray, float]:
    """Unit white noise smoothed by a Gaussian (as resampling or a radio beam does), and the
    spread of its filtered significance predicted from the kernels alone."""
    from scipy.signal import convolve, fftconvolve

    axis = np.arange(-8, 9)
    smooth = np.exp(-(axis[:, None] ** 2 + axis[None, :] ** 2) / (2 * smoothing_sigma_px**2))
    smooth /= smooth.sum()
    white = np.random.default_rng(seed).normal(0.0, 1.0, (size + 100, size + 100))
    noise = fftconvolve(white, smooth, mode="same")[50:-50, 50:-50].astype(np.float32)
    kernel = gaussian_kernel(3.0).astype(np.float64)
    predicted = np.sqrt((convolve(kernel, smooth) ** 2).sum()) / np.sqrt((smooth**2).sum() * (kernel**2).sum())
    return noise, float(predicted)


@pytest.mark.parametrize("smoothing_sigma_px", [0.7, 1.5])
def test_the_threshold_is_the_true_significance_in_correlated_noise(smoothing_sigma_px):
    """Issue 14: the RMS map sees each pixel's noise, not its correlation; "5 sigma" in the
    filtered image was 1.3-2.3 sigma, and pure noise gave hundreds of detections."""
    noise, predicted = _correlated_noise(smoothing_sigma_px)
    background, _ = subtract_sky(noise, np.zeros(noise.shape, dtype=bool), BackgroundSettings())
    factor = noise_correlation_factor(noise, background.rms, None, gaussian_kernel(3.0))
    assert factor == pytest.approx(predicted, rel=0.06)  # (the RMS map's clipping reads ~1.5% low)
    settings = DetectionSettings()
    assert len(detect(noise, background.rms, None, settings).objects) == 0
    assert len(detect(-noise, background.rms, None, settings).objects) == 0
    assert len(detect(noise, background.rms, None, settings, noise_factor=1.0).objects) > 100


def test_white_noise_keeps_the_nominal_threshold_and_sources_do_not_raise_it():
    rng = np.random.default_rng(8)
    frame = rng.normal(0.0, 1.0, (400, 400)).astype(np.float32)
    yy, xx = np.mgrid[:400, :400]
    for x, y in rng.uniform(20, 380, (60, 2)):  # bright stars on ~6% of the sky
        frame += (500.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.3**2))).astype(np.float32)
    assert noise_correlation_factor(frame, np.float32(1.0), None, gaussian_kernel(3.0)) == 1.0
    assert noise_correlation_factor(-frame, np.float32(1.0), None, gaussian_kernel(3.0)) == 1.0
    result = detect(frame, np.float32(1.0), None, DetectionSettings())
    assert result.noise_correlation_factor == 1.0 and len(result.objects) > 50


def test_the_segmentation_map_labels_each_returned_source_with_its_own_pixels():
    """Photometry corrects neighbours with it (issue 14 item 3), so it must describe the
    sources returned, blends deblended on their own included: each label's pixels are its
    source's footprint (npix of them, its peak among them), and no label is left over."""
    frame = _blended_pairs([60, 120, 180, 300])
    frame[30:36, 330:336] += 40.0  # and one source on its own
    result = detect(frame, np.float32(1.0), None, DetectionSettings(threshold_sigma=3.0), segmentation_map=True)
    objects, segmap, ids = result.objects, result.segmap, result.seg_ids
    assert segmap.shape == frame.shape and len(ids) == len(objects) == len(set(ids.tolist())) > 9
    assert ((objects["flag"] & 1) != 0).sum() >= 8  # four blends, each split in two
    counts = np.bincount(segmap.ravel(), minlength=ids.max() + 1)
    assert (counts[ids] == objects["npix"]).all()
    assert (segmap[objects["ycpeak"], objects["xcpeak"]] == ids).all()
    assert set(np.unique(segmap).tolist()) == {0, *ids.tolist()}
    plain = detect(frame, np.float32(1.0), None, DetectionSettings(threshold_sigma=3.0))
    assert plain.segmap is None and np.array_equal(plain.objects, objects)


@settings(max_examples=200, deadline=None)
@given(ny=st.integers(1, 40), nx=st.integers(1, 40), radius=st.integers(1, 9), axis=st.integers(0, 1),
       density=st.floats(0.0, 0.3), seed=st.integers(0, 2**32 - 1))
def test_grown_mask_is_the_maximum_filter_it_replaced(ny, nx, radius, axis, density, seed):
    mask = np.random.default_rng(seed).random((ny, nx)) < density
    expected = ndimage.maximum_filter1d(mask, 2 * radius + 1, axis=axis)
    np.testing.assert_array_equal(_grown(mask, radius, axis=axis), expected)


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 12), margin=st.integers(0, 3), seed=st.integers(0, 2**32 - 1))
def test_box_mosaic_gathers_each_box_with_its_margin_and_its_own_labelled_pixels(n, margin, seed):
    rng = np.random.default_rng(seed)
    ny, nx = 30, 40
    image = rng.normal(size=(ny, nx)).astype(np.float32)
    segmap = rng.integers(0, 4, size=(ny, nx)).astype(np.int32)
    x0, y0 = rng.integers(0, nx, n), rng.integers(0, ny, n)
    x1, y1 = np.minimum(nx - 1, x0 + rng.integers(0, 8, n)), np.minimum(ny - 1, y0 + rng.integers(0, 8, n))
    labels = rng.integers(1, 4, n)
    mosaic = _BoxMosaic(x0, x1, y0, y1, (ny, nx), margin=margin)
    out, (rows, cols, boxes) = mosaic.gather(image, segmap, labels)
    padded = np.pad(image, margin)  # zeros beyond the image, as a filter of the whole image sees them
    for k in range(n):
        box = out[mosaic.oy[k] - margin : mosaic.oy[k] + y1[k] - y0[k] + 1 + margin,
                  mosaic.ox[k] - margin : mosaic.ox[k] + x1[k] - x0[k] + 1 + margin]
        np.testing.assert_array_equal(box, padded[y0[k] : y1[k] + 1 + 2 * margin, x0[k] : x1[k] + 1 + 2 * margin])
        r, c = np.nonzero(segmap[y0[k] : y1[k] + 1, x0[k] : x1[k] + 1] == labels[k])
        np.testing.assert_array_equal(rows[boxes == k], r + mosaic.oy[k])
        np.testing.assert_array_equal(cols[boxes == k], c + mosaic.ox[k])
    assert np.all(np.diff(boxes) >= 0)  # box by box, in order
def test_labels_are_narrowed_to_int16_only_when_they_all_fit():
    labels = np.zeros((3, 3), np.int32)
    assert narrowest_labels(labels) is np.int16
    labels[1, 1] = 32767
    assert narrowest_labels(labels) is np.int16
    labels[2, 2] = 32768  # would wrap around in int16
    assert narrowest_labels(labels) is np.int32
    assert narrowest_labels(np.zeros((0, 4), np.int32)) is np.int16


def test_the_segmentation_map_holds_every_sources_label_in_half_the_memory():
    rng = np.random.default_rng(2)
    frame = rng.normal(0.0, 1.0, (200, 200)).astype(np.float32)
    yy, xx = np.mgrid[:200, :200]
    for x, y in rng.uniform(15, 185, (20, 2)):
        frame += (500.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 4.0)).astype(np.float32)
    found = detect(frame, np.float32(1.0), None, DetectionSettings(), noise_factor=1.0, segmentation_map=True)
    assert found.segmap.dtype == np.int16 and len(found.objects) >= 15
    assert set(np.unique(found.segmap)) - {0} == set(found.seg_ids.tolist())
