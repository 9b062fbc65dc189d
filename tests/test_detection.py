"""SEP's limits: crowded frames must not crash, and the result says what happened."""

from __future__ import annotations

import numpy as np
import pytest

from skysift.detection import detect, gaussian_kernel
from skysift.errors import DetectionFailed
from skysift.settings import DetectionSettings


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
