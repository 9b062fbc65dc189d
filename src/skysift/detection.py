"""Source extraction with SEP, robust to crowded frames.

Detection runs on the background-subtracted image with a per-pixel error map (the
background RMS), so the threshold is in sigma everywhere on the frame. A Gaussian
kernel matched to the PSF boosts faint point sources; the threshold is the
significance in the filtered image (5 = a 5-sigma point source). SEP's fixed buffers overflow on
crowded frames ("internal pixel buffer full", "object deblending overflow"): the
limits are raised first, then the threshold, and the result says so.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import numpy as np
import sep

from .deblending import isolate_blends
from .errors import DetectionFailed
from .settings import DetectionSettings

log = logging.getLogger(__name__)

DEFAULT_FILTER_FWHM_PX = 3.0
OVERFLOW_MESSAGES = ("internal pixel buffer full", "object deblending overflow", "deblending overflow")


@dataclass(frozen=True)
class Detections:
    """SEP's object array and how it was obtained."""

    objects: np.ndarray  # SEP structured array: x, y, a, b, theta, flux, peak, npix, flag, ...
    threshold_sigma: float  # the threshold actually used
    crowded: bool  # True when SEP overflowed and the threshold had to be raised
    filter_margin_px: int  # pixels beyond a source that its filtered values depend on, plus one


def gaussian_kernel(fwhm_px: float) -> np.ndarray:
    """A normalised 2-D Gaussian of the given FWHM, sampled out to ~2 FWHM (odd size)."""
    sigma = fwhm_px / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    half = max(1, int(np.ceil(2.0 * sigma)))
    axis = np.arange(-half, half + 1, dtype=np.float32)
    kernel = np.exp(-(axis[:, None] ** 2 + axis[None, :] ** 2) / (2.0 * sigma**2))
    return (kernel / kernel.sum()).astype(np.float32)


@contextmanager
def sep_limits(*, pixel_stack: int | None = None, sub_object_limit: int | None = None) -> Iterator[None]:
    """Set SEP's process-wide extraction limits for a block, and restore the previous ones after it.

    ``sep.set_extract_pixstack`` and ``sep.set_sub_object_limit`` change globals of the
    SEP library: left set, the last value (e.g. the small pixel stack of a blend
    cut-out) would make a later ``sep.extract`` in the same process, skysift's or the
    caller's, fail with "internal pixel buffer full". A limit given as None is left alone.
    """
    saved_stack, saved_limit = sep.get_extract_pixstack(), sep.get_sub_object_limit()
    try:
        if pixel_stack is not None:
            sep.set_extract_pixstack(pixel_stack)
        if sub_object_limit is not None:
            sep.set_sub_object_limit(sub_object_limit)
        yield
    finally:
        sep.set_extract_pixstack(saved_stack)
        sep.set_sub_object_limit(saved_limit)


def _is_overflow(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(message in text for message in OVERFLOW_MESSAGES)


def detect(
    data: np.ndarray,
    error: np.ndarray | float,
    mask: np.ndarray | None,
    settings: DetectionSettings,
    *,
    filter_fwhm_px: float | None = None,
) -> Detections:
    """Extract sources from a background-subtracted image.

    Parameters
    ----------
    data : ndarray
        Background-subtracted float32 image (counts), masked pixels set to 0.
    error : ndarray or float
        1-sigma background noise per pixel (counts); the threshold is relative to it.
    mask : ndarray of bool, optional
        True where pixels must not be used.
    settings : DetectionSettings
        Threshold, minimum area, deblending and buffer limits.
    filter_fwhm_px : float, optional
        FWHM of the matched Gaussian filter; ``settings.filter_fwhm_px`` wins, then
        this value (e.g. from the header's seeing), then 3 px.

    Raises
    ------
    DetectionFailed
        When SEP still overflows after ``settings.max_retries`` raised thresholds.
    """
    fwhm = settings.filter_fwhm_px or filter_fwhm_px or DEFAULT_FILTER_FWHM_PX
    kernel = gaussian_kernel(fwhm)
    # With a unit-sum kernel the filtered noise is err * sqrt(sum(K^2)): scaling the threshold
    # by it makes ``threshold_sigma`` the significance in the filtered image, as a matched
    # filter would, at the cost of one convolution instead of two (SEP's 'matched' mode also
    # convolves the variance map, ~4x slower on a 4k image).
    noise_gain = float(np.sqrt((kernel.astype(np.float64) ** 2).sum()))
    threshold = settings.threshold_sigma
    margin = kernel.shape[0] // 2 + 1
    for attempt in range(settings.max_retries + 1):
        extract = partial(_extract, threshold=threshold * noise_gain, kernel=kernel, settings=settings)
        try:
            with sep_limits(sub_object_limit=settings.sub_object_limit):
                objects = isolate_blends(data, error, mask, extract(data, error, mask), extract, margin_px=margin)
            return Detections(objects, threshold_sigma=threshold, crowded=attempt > 0, filter_margin_px=margin)
        except Exception as exc:  # SEP raises plain Exception for its buffer overflows
            if not _is_overflow(exc):
                raise
            log.warning("SEP overflow at %.2f sigma (%s); raising the threshold", threshold, exc)
            threshold *= 1.5
    raise DetectionFailed(
        f"SEP overflowed even at {threshold / 1.5:.1f} sigma: the field is too crowded for "
        "the pixel-stack and sub-object limits; raise detection.pixel_stack / sub_object_limit"
    )


def _extract(data, error, mask, *, threshold: float, kernel: np.ndarray, settings: DetectionSettings,
             segmentation_map: bool = False):
    """One ``sep.extract`` call with the detection settings (threshold in units of ``error``).

    SEP allocates its whole pixel stack on every call; an array never has more active
    pixels than pixels, so small arrays (blend cut-outs) get a small stack.
    """
    with sep_limits(pixel_stack=min(settings.pixel_stack, max(1024, data.size))):
        return sep.extract(
            data,
            threshold,
            err=error,
            mask=mask,
            minarea=settings.min_area_px,
            filter_kernel=kernel,
            filter_type="conv",
            deblend_nthresh=settings.deblend_nthresh,
            deblend_cont=settings.deblend_cont,
            clean=settings.clean,
            clean_param=settings.clean_param,
            segmentation_map=segmentation_map,
        )
