"""Source extraction with SEP, robust to crowded frames.

Detection runs on the background-subtracted image with a per-pixel error map (the
background RMS), so the threshold is in sigma everywhere on the frame. A Gaussian
kernel matched to the PSF boosts faint point sources; the threshold is the
significance in the filtered image (5 = a 5-sigma point source).

For white noise the filtered noise is ``rms * sqrt(sum(K^2))``. Real images are rarely
white: resampled, stacked, drizzled, scanned or interferometric images have spatially
correlated noise, and their filtered noise is larger by a factor the RMS map cannot
see (3.3 to 4.4 on the package images astropy and astroquery ship; a "5 sigma"
threshold was really 1.2 to 2 sigma there, and the negated images gave dozens of
false detections). :func:`noise_correlation_factor` measures the spread of the
filtered significance on the frame's own source-free sky and the threshold is scaled
by it, so the threshold is the true significance on every image; the factor is
recorded per image (``images.noise_correlation_factor``). SEP's fixed buffers overflow on
crowded frames ("internal pixel buffer full", "object deblending overflow"): the
limits are raised first, then the threshold, and the result says so.

With the segmentation map :func:`detect` also finds the undetected companions inside
each source's isophote (:func:`companion_pixels`): a fainter star a few pixels from a
brighter one often makes no peak of its own in the filtered image, so neither SEP nor
Source Extractor splits it off, and its light was counted as the brighter star's.
Photometry corrects those pixels as it corrects other sources' (issue 14 item 3).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import numpy as np
import sep
from scipy import ndimage

from skysift.core.compiled import loops as _loops  # None without a compiler: NumPy's loops
from skysift.core.deblending import isolate_blends, isolate_blends_segmented
from skysift.core.median import median
from skysift.core.shelves import shelf_layout
from skysift.errors import DetectionFailed
from skysift.heap import release_free_heap
from skysift.settings import DetectionSettings

__all__ = [
    "CENTRE_SEARCH_PX",
    "CENTRE_SLACK_PX",
    "COMPANION_ASYMMETRY",
    "COMPANION_BLOCK_PX",
    "COMPANION_MAX_AREA_FWHM2",
    "COMPANION_MIN_RADIUS_PX",
    "COMPANION_SIGMA",
    "DEFAULT_FILTER_FWHM_PX",
    "FACTOR_STEP",
    "INITIAL_PIXEL_STACK",
    "MAD_TO_SIGMA",
    "MAX_SKY_ITERATIONS",
    "MAX_SKY_SAMPLE",
    "MIN_SKY_PIXELS",
    "OVERFLOW_MESSAGES",
    "SAMPLE_BAND_ROWS",
    "SKY_CLIP_SIGMA",
    "SKY_GROW_PX",
    "Detections",
    "companion_pixels",
    "detect",
    "detection_kernel",
    "gaussian_kernel",
    "local_peak",
    "narrowest_labels",
    "noise_correlation_factor",
    "sep_limits",
]

log = logging.getLogger(__name__)

DEFAULT_FILTER_FWHM_PX = 3.0
#: Pixels of SEP's first pixel stack (SExtractor's default MEMORY_PIXSTACK); grown up to
#: ``detection.pixel_stack`` when full (see :func:`_extract`).
INITIAL_PIXEL_STACK = 300_000
OVERFLOW_MESSAGES = ("internal pixel buffer full", "object deblending overflow", "deblending overflow")
#: Filtered significance (in units of the filtered noise) beyond which a pixel belongs
#: to a source or an artefact, not to the sky, when the filtered noise is measured: the
#: default detection threshold, so the sky is what the default catalog leaves out.
SKY_CLIP_SIGMA = 5.0
#: Pixels around such a pixel that are not sky either (a source's wings below the clip).
SKY_GROW_PX = 3
#: With fewer sky pixels than this the filtered noise cannot be measured: white noise is assumed.
MIN_SKY_PIXELS = 1000
#: The sky statistics use about this many pixels at most: larger frames are sampled in bands.
MAX_SKY_SAMPLE = 2**19
#: Standard deviation of a normal distribution per unit median absolute deviation (astropy's mad_std).
MAD_TO_SIGMA = 1.482602218505602
#: Rows per sampled band.
SAMPLE_BAND_ROWS = 64
#: The sky and its spread are refined together at most this many times (3 to 5 suffice).
MAX_SKY_ITERATIONS = 10
#: The factor is rounded to this step: finer would be false precision (a 300 x 300 frame
#: measures it to ~1%), and a tile or a strip of a frame then gets the factor the whole
#: frame gets, so tiled and whole-image catalogs agree (white noise: 1.004-1.019 on the
#: 16 tiles of a 1024^2 synthetic sky, 1.011 on the whole, all 1.00).
FACTOR_STEP = 0.05
#: A pixel of a source's isophote belongs to an undetected companion when its filtered value
#: exceeds the filtered value at the point opposite it through the source's centre (the
#: local maximum of the filtered image nearest the barycentre) by this many filtered-noise
#: sigmas (of the difference of the two) ...
COMPANION_SIGMA = 5.0
#: ... plus this fraction of the opposite value (centring error, pixelisation, Poisson
#: noise and the PSF's own asymmetry near a bright core) ...
COMPANION_ASYMMETRY = 0.5
#: ... and lies farther than this from the centre (pixels).
COMPANION_MIN_RADIUS_PX = 1.5
#: A connected region of such pixels covering more than this many times pi FWHM^2 (the
#: filter's FWHM) is the source's own lopsided light (a nebula, an irregular galaxy: on
#: astroquery's MAGPIS image 793 of one source's 1,274 pixels), not a star beside it.
COMPANION_MAX_AREA_FWHM2 = 9.0
#: Isophote pixels compared with their opposite points a block at a time (a dozen float64 and
#: int64 arrays per pixel: 147,000 pixels held 30 MiB at once in a strip of the 4096^2 bench sky).
COMPANION_BLOCK_PX = 2**15
#: The centre is looked for this many pixels (steps of steepest ascent) from the barycentre ...
CENTRE_SEARCH_PX = 3
#: ... and the opposite points within this many pixels beyond the isophote reflected through the
#: barycentre (farther ones are not compared).
CENTRE_SLACK_PX = 2


@dataclass(frozen=True)
class Detections:
    """SEP's object array and how it was obtained."""

    objects: np.ndarray  # SEP structured array: x, y, a, b, theta, flux, peak, npix, flag, ...
    threshold_sigma: float  # the threshold actually used
    crowded: bool  # True when SEP overflowed and the threshold had to be raised
    filter_margin_px: int  # pixels beyond a source that its filtered values depend on, plus one
    noise_correlation_factor: float = 1.0  # filtered noise / its white-noise expectation (threshold scale)
    #: map of which source each pixel belongs to (0 = sky; int16 when the labels fit, see
    #: narrowest_labels, else int32), when asked for, and each row's label in it
    segmap: np.ndarray | None = None
    seg_ids: np.ndarray | None = None
    #: bool map, with the segmentation map: pixels of a source's isophote that belong to an
    #: undetected companion (:func:`companion_pixels`)
    companions: np.ndarray | None = None


def gaussian_kernel(fwhm_px: float) -> np.ndarray:
    """A normalised 2-D Gaussian of the given FWHM, sampled out to ~2 FWHM (odd size)."""
    sigma = fwhm_px / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    half = max(1, int(np.ceil(2.0 * sigma)))
    axis = np.arange(-half, half + 1, dtype=np.float32)
    kernel = np.exp(-(axis[:, None] ** 2 + axis[None, :] ** 2) / (2.0 * sigma**2))
    return (kernel / kernel.sum()).astype(np.float32)


def detection_kernel(settings: DetectionSettings, filter_fwhm_px: float | None = None) -> np.ndarray:
    """The matched filter :func:`detect` uses: ``settings.filter_fwhm_px``, else ``filter_fwhm_px``, else 3 px."""
    return gaussian_kernel(settings.filter_fwhm_px or filter_fwhm_px or DEFAULT_FILTER_FWHM_PX)


def _filtered(data: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``data`` convolved with ``kernel`` (float32, zero beyond the edges); two 1-D passes
    when the kernel is separable, as a Gaussian is."""
    column, row = kernel.sum(axis=1), kernel.sum(axis=0)  # a unit-sum separable kernel is their product
    if np.allclose(np.outer(column, row), kernel, rtol=1e-5, atol=1e-8):
        out = ndimage.correlate1d(data, row.astype(np.float32), axis=1, mode="constant")
        return ndimage.correlate1d(out, column.astype(np.float32), axis=0, mode="constant", output=out)
    return ndimage.correlate(data, kernel.astype(np.float32), mode="constant")


@dataclass(frozen=True)
class _Band:
    """Filtered significance of a band of rows read with margins, and which of its pixels may be sky."""

    significance: np.ndarray
    usable: np.ndarray  # core rows, away from the edges' and masked pixels' filter reach

    def sky(self, centre: float, spread: float) -> np.ndarray:
        """Usable pixels farther than :data:`SKY_GROW_PX` from any pixel beyond the clip."""
        if not np.isfinite(spread):
            return self.usable
        outliers = np.abs(self.significance - np.float32(centre)) > np.float32(SKY_CLIP_SIGMA * spread)
        return self.usable & ~_grown(_grown(outliers, SKY_GROW_PX, axis=0), SKY_GROW_PX, axis=1)


def _grown(mask: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """``mask`` with every True pixel spread ``radius`` pixels both ways along ``axis``: the
    ``ndimage.maximum_filter1d`` of size ``2 radius + 1``, by shifted ORs whose reach doubles
    (two rounds for radius 3: a third of the filter's time on a band of boolean pixels)."""
    grown = np.moveaxis(mask, axis, 0).copy()  # contiguous along the shifts
    reach = 0
    while reach < radius:
        step = min(reach + 1, radius - reach)  # OR-ing shifts of +-step: reach -> reach + step
        before = grown.copy()
        grown[step:] |= before[:-step]
        grown[:-step] |= before[step:]
        reach += step
    return np.moveaxis(grown, 0, axis)


def _sample_bands(data: np.ndarray, error: np.ndarray | float, mask: np.ndarray | None,
                  kernel: np.ndarray) -> list[_Band]:
    """The frame, or evenly spaced bands of rows holding about :data:`MAX_SKY_SAMPLE` pixels of it."""
    ny, nx = data.shape
    half = kernel.shape[0] // 2
    pad = half + SKY_GROW_PX
    if ny * nx <= MAX_SKY_SAMPLE:
        cores = [(0, ny)]
    else:
        n = min(ny // SAMPLE_BAND_ROWS, -(-MAX_SKY_SAMPLE // (nx * SAMPLE_BAND_ROWS)))
        starts = np.linspace(0, ny - SAMPLE_BAND_ROWS, max(1, n)).round().astype(int)
        cores = [(int(y), int(y) + SAMPLE_BAND_ROWS) for y in starts]
    gain = np.float32(np.sqrt((kernel.astype(np.float64) ** 2).sum()))
    error = np.broadcast_to(np.asarray(error, dtype=np.float32), data.shape)
    bands = []
    for y0, y1 in cores:
        r0, r1 = max(0, y0 - pad), min(ny, y1 + pad)
        significance = _filtered(np.ascontiguousarray(data[r0:r1], dtype=np.float32), kernel)
        significance /= error[r0:r1] * gain
        usable = np.zeros(significance.shape, dtype=bool)
        usable[max(y0, half) - r0 : min(y1, ny - half) - r0, half : nx - half] = True
        if mask is not None:
            usable &= ~ndimage.maximum_filter(mask[r0:r1], size=2 * half + 1)
        bands.append(_Band(significance, usable))
    return bands


def _robust_spread(bands: list[_Band], skies: list[np.ndarray]) -> tuple[float, float, int]:
    """Median, MAD-based standard deviation and count of the sky pixels of all bands."""
    values = np.concatenate([band.significance[sky] for band, sky in zip(bands, skies, strict=True)])
    if values.size == 0:
        return 0.0, float("nan"), 0
    centre = median(values)  # np.median's values, from a bracketed slice of the pixels
    deviation = np.abs(values - centre)
    return float(centre), float(MAD_TO_SIGMA * median(deviation)), int(values.size)


def noise_correlation_factor(data: np.ndarray, error: np.ndarray | float, mask: np.ndarray | None,
                             kernel: np.ndarray) -> float:
    """Noise of the filtered image in units of its white-noise expectation, measured on the sky.

    The significance of a pixel in the filtered image is ``conv(data, K) / (error *
    sqrt(sum(K^2)))``: for white noise of standard deviation ``error`` its spread is 1.
    Correlated noise spreads it wider. The spread is measured robustly (MAD) on sky
    pixels: not masked, not within the filter's reach of the edges or of a masked
    pixel, and farther than :data:`SKY_GROW_PX` from any pixel whose significance
    departs from the sky's median by more than :data:`SKY_CLIP_SIGMA` times the spread
    (sources, and negative artefacts alike, so an image and its negation get the same
    factor); the sky and the spread are refined together until the spread settles.
    Frames larger than :data:`MAX_SKY_SAMPLE` pixels are sampled in evenly spaced bands
    of rows (a 4096^2 frame in 2 bands of 64 rows).

    Parameters
    ----------
    data : ndarray
        Background-subtracted float32 image (counts), masked pixels set to 0.
    error : ndarray or float
        1-sigma background noise per pixel (counts), never <= 0.
    mask : ndarray of bool, optional
        True where pixels must not be used.
    kernel : ndarray
        The detection filter.

    Returns
    -------
    float
        The factor (1 for white noise) to :data:`FACTOR_STEP`; 1.0 when the frame has
        fewer than :data:`MIN_SKY_PIXELS` sky pixels to measure it on.
    """
    bands = _sample_bands(data, error, mask, kernel)
    centre, spread, count = _robust_spread(bands, [band.usable for band in bands])
    factor = 1.0
    for _ in range(MAX_SKY_ITERATIONS):
        if count < MIN_SKY_PIXELS or not np.isfinite(spread) or spread <= 0:
            break
        factor = spread
        centre, spread, count = _robust_spread(bands, [band.sky(centre, spread) for band in bands])
        if abs(spread - factor) <= 1e-3 * factor:
            if count >= MIN_SKY_PIXELS and spread > 0:
                factor = spread
            break
    return round(max(1, round(factor / FACTOR_STEP)) * FACTOR_STEP, 6)


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
    noise_factor: float | None = None,
    segmentation_map: bool = False,
    trim_heap: bool = False,
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
    noise_factor : float, optional
        The :func:`noise_correlation_factor` of the frame ``data`` is part of (a strip
        must use its whole frame's); measured on ``data`` when not given.
    segmentation_map : bool
        Also return which pixels belong to which source (:attr:`Detections.segmap`,
        :attr:`Detections.seg_ids`): SEP's map, with every blend's pixels from its own
        extraction; and which of a source's pixels are an undetected companion's
        (:attr:`Detections.companions`).
    trim_heap : bool
        Give the memory SEP's extraction freed back to the system before the segmentation
        map's copy and the companion search (~20 MiB on a 4096 x 2176 strip): for a strip
        worker, whose peak the frame's maps it makes next add to. Elsewhere glibc's reuse of
        that memory is cheaper than the system's pages again: in a bulk run of 64 2048^2
        frames, one worker per frame, trimming there cost ~7,000 page faults a frame.

    Raises
    ------
    DetectionFailed
        When SEP still overflows after ``settings.max_retries`` raised thresholds.
    """
    kernel = detection_kernel(settings, filter_fwhm_px)
    if noise_factor is None:
        noise_factor = noise_correlation_factor(data, error, mask, kernel)
    # With a unit-sum kernel the filtered white noise is err * sqrt(sum(K^2)), and the
    # measured correlation factor scales it to the filtered image's real noise: the
    # threshold is the significance in the filtered image, as a matched filter's would
    # be, at the cost of one convolution instead of two (SEP's 'matched' mode also
    # convolves the variance map, ~4x slower on a 4k image).
    noise_gain = float(np.sqrt((kernel.astype(np.float64) ** 2).sum())) * noise_factor
    threshold = settings.threshold_sigma
    margin = kernel.shape[0] // 2 + 1
    for attempt in range(settings.max_retries + 1):
        extract = partial(_extract, threshold=threshold * noise_gain, kernel=kernel, settings=settings)
        try:
            with sep_limits(sub_object_limit=settings.sub_object_limit):
                segmap = seg_ids = companions = None
                if segmentation_map:
                    objects, segmap = extract(data, error, mask, segmentation_map=True)
                    objects, seg_ids = isolate_blends_segmented(data, error, mask, objects, segmap, extract,
                                                                margin_px=margin)
                    if trim_heap:
                        release_free_heap()  # SEP's freed working memory, before ...
                    segmap = segmap.astype(narrowest_labels(segmap), copy=False)  # ... this copy and the search
                    companions = companion_pixels(data, error, mask, objects, segmap, seg_ids, kernel, noise_gain)
                else:
                    objects = isolate_blends(data, error, mask, extract(data, error, mask), extract, margin_px=margin)
            return Detections(objects, threshold_sigma=threshold, crowded=attempt > 0, filter_margin_px=margin,
                              noise_correlation_factor=noise_factor, segmap=segmap, seg_ids=seg_ids,
                              companions=companions)
        except Exception as exc:  # SEP raises plain Exception for its buffer overflows
            if not _is_overflow(exc):
                raise
            log.warning("SEP overflow at %.2f sigma (%s); raising the threshold", threshold, exc)
            threshold *= 1.5
    raise DetectionFailed(
        f"SEP overflowed even at {threshold / 1.5:.1f} sigma: the field is too crowded for "
        "the pixel-stack and sub-object limits; raise detection.pixel_stack / sub_object_limit"
    )


def narrowest_labels(segmap: np.ndarray) -> type:
    """int16 when every label of ``segmap`` fits in it (fewer than 32,768 sources), else int32:
    the map then takes half the memory (32 of 64 MiB for a 4096^2 frame) and holds the same
    labels, which deblending, the companion search and photometry only compare."""
    return np.int16 if int(segmap.max(initial=0)) <= np.iinfo(np.int16).max else np.int32


def local_peak(image: np.ndarray, x: np.ndarray, y: np.ndarray, *, steps: int, box: bool = False,
               within: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
               ) -> tuple[np.ndarray, np.ndarray]:
    """The local maximum of ``image`` nearest (x, y): steepest ascent over the 8 neighbours
    from the nearest pixel, at most ``steps`` pixels, then the vertex of the quadratic
    surface through the maximum and its 8 neighbours, within a pixel of it (on an
    elongated, tilted source the brightest pixel can be 0.7 px from the centre, and a
    parabola per axis misses the centre by up to a third of a pixel).

    ``box``: climb the 3x3 box sums of ``image`` (a raw image's noise smoothed). ``within``
    (x0, x1, y0, y1 per point, inclusive): pixels the climb stays in (default: the image,
    less the border the sums need). Non-finite starts are returned unchanged.
    """
    ny, nx = image.shape
    edge = 2 if box else 1
    ok = np.isfinite(x) & np.isfinite(y)
    x0, x1, y0, y1 = (edge, nx - 1 - edge, edge, ny - 1 - edge) if within is None else within
    x0, x1 = np.maximum(x0, edge), np.minimum(x1, nx - 1 - edge)
    y0, y1 = np.maximum(y0, edge), np.minimum(y1, ny - 1 - edge)
    px = np.clip(np.rint(np.where(ok, x, 0)).astype(np.int64), x0, x1)
    py = np.clip(np.rint(np.where(ok, y, 0)).astype(np.int64), y0, y1)

    def value(cx, cy):
        if not box:
            return image[cy, cx].astype(np.float64)
        return sum(image[cy + j, cx + i].astype(np.float64) for j in (-1, 0, 1) for i in (-1, 0, 1))

    moves = np.array([(i, j) for j in (-1, 0, 1) for i in (-1, 0, 1)])
    for _ in range(steps):
        cx = np.clip(px[None, :] + moves[:, :1], x0, x1)
        cy = np.clip(py[None, :] + moves[:, 1:], y0, y1)
        best = np.argmax(value(cx, cy), axis=0)  # ties: the first, so a flat top stays put only if no move is higher
        columns = np.arange(px.size)
        nx_, ny_ = cx[best, columns], cy[best, columns]
        if np.array_equal(nx_, px) and np.array_equal(ny_, py):
            break
        px, py = nx_, ny_
    # a quadratic surface through the maximum and its 8 neighbours: its vertex
    f = {(i, j): value(np.clip(px + i, edge, nx - 1 - edge), np.clip(py + j, edge, ny - 1 - edge))
         for j in (-1, 0, 1) for i in (-1, 0, 1)}
    gx, gy = 0.5 * (f[1, 0] - f[-1, 0]), 0.5 * (f[0, 1] - f[0, -1])
    hxx, hyy = f[1, 0] + f[-1, 0] - 2.0 * f[0, 0], f[0, 1] + f[0, -1] - 2.0 * f[0, 0]
    hxy = 0.25 * (f[1, 1] - f[1, -1] - f[-1, 1] + f[-1, -1])
    det = hxx * hyy - hxy**2
    peaked = (hxx < 0) & (det > 0)  # a maximum: the Hessian negative definite
    with np.errstate(divide="ignore", invalid="ignore"):
        dx = np.where(peaked, (hxy * gy - hyy * gx) / det, 0.0)
        dy = np.where(peaked, (hxy * gx - hxx * gy) / det, 0.0)
    cx, cy = px + np.clip(dx, -1.0, 1.0), py + np.clip(dy, -1.0, 1.0)
    return np.where(ok, cx, x), np.where(ok, cy, y)


def companion_pixels(data: np.ndarray, error: np.ndarray | float, mask: np.ndarray | None, objects: np.ndarray,
                     segmap: np.ndarray, seg_ids: np.ndarray, kernel: np.ndarray, noise_gain: float) -> np.ndarray:
    """Which pixels of the sources' isophotes belong to companions too faint or too close to be
    detected on their own (a bool map of ``data``'s shape).

    A star's light is symmetric about its centre; a companion's is not. In the filtered
    image (``kernel``, as detection saw it) a pixel of source S's isophote is a companion's
    when it exceeds the value opposite it through S's centre by
    :data:`COMPANION_SIGMA` times the noise of that difference (``noise_gain``: the filtered
    noise per unit of ``error``) plus :data:`COMPANION_ASYMMETRY` of the opposite value,
    farther than :data:`COMPANION_MIN_RADIUS_PX` from the centre. S's centre is the local
    maximum of the filtered image nearest its barycentre (a companion pulls the barycentre
    towards it, not the peak). Connected regions larger than :data:`COMPANION_MAX_AREA_FWHM2`
    pi FWHM^2 are dropped: that is lopsided light of S's own. Pixels whose filtered value,
    or the opposite one, is made of masked pixels or pixels beyond the edge are not compared.

    The filtered image is needed only around the sources: each source's box (its
    isophote and the same reflected through a centre near its barycentre) is filtered in
    a mosaic of such boxes (9% of the pixels of a 4096^2 synthetic sky with 3,369 sources).
    """
    ny, nx = data.shape
    companions = np.zeros(data.shape, dtype=bool)
    if len(objects) == 0:
        return companions
    half = kernel.shape[0] // 2
    bx, by = objects["x"].astype(np.float64), objects["y"].astype(np.float64)
    usable = np.isfinite(bx) & np.isfinite(by)
    bx, by = np.where(usable, bx, objects["xpeak"]), np.where(usable, by, objects["ypeak"])
    xmin, xmax = objects["xmin"].astype(np.int64), objects["xmax"].astype(np.int64)
    ymin, ymax = objects["ymin"].astype(np.int64), objects["ymax"].astype(np.int64)
    # the isophote and its reflection through the barycentre, with room for the centre to differ
    slack = CENTRE_SLACK_PX
    x0 = np.clip(np.minimum(xmin, np.floor(2 * bx - xmax).astype(np.int64)) - slack, 0, nx - 1)
    x1 = np.clip(np.maximum(xmax, np.ceil(2 * bx - xmin).astype(np.int64)) + slack, 0, nx - 1)
    y0 = np.clip(np.minimum(ymin, np.floor(2 * by - ymax).astype(np.int64)) - slack, 0, ny - 1)
    y1 = np.clip(np.maximum(ymax, np.ceil(2 * by - ymin).astype(np.int64)) + slack, 0, ny - 1)
    mosaic = _BoxMosaic(x0, x1, y0, y1, data.shape, margin=half)
    pixels, (yy, xx, box) = mosaic.gather(data, segmap, np.asarray(seg_ids))  # and each box's source's pixels
    filtered = _filtered(pixels, kernel)
    del pixels
    ox, oy = mosaic.ox - x0, mosaic.oy - y0  # mosaic minus image coordinates, per box
    lo_x, hi_x, lo_y, hi_y = x0 + ox, x1 + ox, y0 + oy, y1 + oy
    cx, cy = local_peak(filtered, np.clip(bx + ox, lo_x, hi_x), np.clip(by + oy, lo_y, hi_y), steps=CENTRE_SEARCH_PX,
                        within=(lo_x, hi_x, lo_y, hi_y))
    error = np.broadcast_to(np.asarray(error, dtype=np.float32), data.shape)

    def brighter_than_opposite(yy: np.ndarray, xx: np.ndarray, box: np.ndarray) -> np.ndarray:
        """Which of these pixels (mosaic coordinates, and their boxes) exceed the point opposite."""
        mx, my = 2.0 * cx[box] - xx, 2.0 * cy[box] - yy  # the opposite points, mosaic coordinates
        inside = (mx >= lo_x[box]) & (mx <= hi_x[box]) & (my >= lo_y[box]) & (my <= hi_y[box])
        opposite = ndimage.map_coordinates(filtered, [np.where(inside, my, 0.0), np.where(inside, mx, 0.0)], order=1)
        ix, iy = xx - ox[box], yy - oy[box]  # image coordinates of the pixels ...
        jx, jy = mx - ox[box], my - oy[box]  # ... and of the opposite points
        # both filtered values made of the image's pixels (not of the zeros beyond its edges)
        inside &= (np.minimum(ix, jx) >= half) & (np.maximum(ix, jx) <= nx - 1 - half)
        inside &= (np.minimum(iy, jy) >= half) & (np.maximum(iy, jy) <= ny - 1 - half)
        far_error = error[np.where(inside, np.rint(jy), 0).astype(np.int64),
                          np.where(inside, np.rint(jx), 0).astype(np.int64)]
        noise = noise_gain * np.hypot(error[iy, ix], far_error)  # of the difference
        excess = filtered[yy, xx] - opposite
        found = inside & (excess > COMPANION_SIGMA * noise + COMPANION_ASYMMETRY * np.maximum(opposite, 0.0))
        found &= np.hypot(xx - cx[box], yy - cy[box]) > COMPANION_MIN_RADIUS_PX
        return found

    # pixel by pixel, so a block at a time: a dozen arrays per pixel are never all held at once
    found = np.zeros(len(yy), dtype=bool)
    for start in range(0, len(yy), COMPANION_BLOCK_PX):
        block = slice(start, start + COMPANION_BLOCK_PX)
        found[block] = brighter_than_opposite(yy[block], xx[block], box[block])
    if mask is not None and found.any():  # ... and of no masked pixel (0 in ``data``)
        near = ndimage.maximum_filter(mosaic.gather(mask)[0] > 0, size=kernel.shape[0] + 2)  # + 2: interpolated
        mx, my = 2.0 * cx[box[found]] - xx[found], 2.0 * cy[box[found]] - yy[found]
        found[found] &= ~near[yy[found], xx[found]] & ~near[np.rint(my).astype(np.int64), np.rint(mx).astype(np.int64)]
    largest = COMPANION_MAX_AREA_FWHM2 * np.pi * (2.0 * np.sqrt(2.0 * np.log(2.0)) * _kernel_sigma(kernel)) ** 2
    if np.bincount(box[found], minlength=len(objects)).max(initial=0) > largest:  # some region may be too large
        picked = np.zeros(filtered.shape, dtype=bool)
        picked[yy[found], xx[found]] = True
        regions, _ = ndimage.label(picked, structure=np.ones((3, 3), dtype=bool))
        region = regions[yy[found], xx[found]]
        found[found] = np.bincount(region)[region] <= largest
    companions[yy[found] - oy[box[found]], xx[found] - ox[box[found]]] = True
    return companions


def _kernel_sigma(kernel: np.ndarray) -> float:
    """RMS radius per axis of a (normalised, centred) filter kernel, pixels."""
    half = kernel.shape[0] // 2
    axis = np.arange(-half, half + 1, dtype=np.float64)
    weight = kernel.astype(np.float64) / kernel.sum()
    return float(np.sqrt((weight.sum(axis=0) * axis**2).sum()))


class _BoxMosaic:
    """Boxes of an image (inclusive bounds within it) laid side by side in one array, each
    with ``margin`` more of the image around it (zeros beyond the image), so that one
    filtering pass with a kernel of that half-size gives each box's pixels exactly."""

    def __init__(self, x0, x1, y0, y1, shape: tuple[int, int], margin: int) -> None:
        self.shape_of_image = shape
        self.x0, self.x1, self.y0, self.y1, self.margin = x0, x1, y0, y1, margin
        xs, ys, self.shape = shelf_layout(x1 - x0 + 1 + 2 * margin, y1 - y0 + 1 + 2 * margin)
        self.ox, self.oy = np.array(xs, dtype=np.int64) + margin, np.array(ys, dtype=np.int64) + margin  # the box itself

    def gather(self, image: np.ndarray, segmap: np.ndarray | None = None, labels: np.ndarray | None = None):
        """``image`` within the boxes and their margins (float32, zero beyond the image, as a
        filter of the whole image sees it), and with ``segmap`` the mosaic coordinates of
        each box's own source's pixels (``segmap == labels[k]``) with the box's index:
        (rows, columns, boxes). Compiled loops where the extension is built, else NumPy's."""
        if _loops is not None:
            return self._gather_compiled(image, segmap, labels)
        ny, nx = self.shape_of_image
        m = self.margin
        out = np.zeros(self.shape, dtype=np.float32)
        # Python ints: the loop runs once per source, and numpy scalars' arithmetic is slow
        x0, x1, y0, y1 = self.x0.tolist(), self.x1.tolist(), self.y0.tolist(), self.y1.tolist()
        ox, oy = self.ox.tolist(), self.oy.tolist()
        labels = None if labels is None else np.asarray(labels).tolist()
        rows, cols, counts = [], [], []
        for k in range(len(ox)):
            ya, yb = max(0, y0[k] - m), min(ny, y1[k] + m + 1)
            xa, xb = max(0, x0[k] - m), min(nx, x1[k] + m + 1)
            ty, tx = oy[k] + ya - y0[k], ox[k] + xa - x0[k]
            out[ty : ty + yb - ya, tx : tx + xb - xa] = image[ya:yb, xa:xb]
            if segmap is None:
                continue
            r, c = np.nonzero(segmap[y0[k] : y1[k] + 1, x0[k] : x1[k] + 1] == labels[k])
            rows.append(r)
            cols.append(c)
            counts.append(r.size)
        if segmap is None:
            return out, None
        if not rows:
            return out, tuple(np.zeros(0, dtype=np.int64) for _ in range(3))
        boxes = np.repeat(np.arange(len(rows)), counts)  # box coordinates to mosaic ones, all at once
        return out, (np.concatenate(rows) + self.oy[boxes], np.concatenate(cols) + self.ox[boxes], boxes)

    def _gather_compiled(self, image: np.ndarray, segmap: np.ndarray | None, labels: np.ndarray | None):
        """:meth:`gather` by the compiled loops: the same arrays, without NumPy calls per box."""
        out = np.zeros(self.shape, dtype=np.float32)
        bounds = [np.ascontiguousarray(v, dtype=np.int64) for v in (self.x0, self.x1, self.y0, self.y1)]
        _loops.paste(image, out, *bounds, np.ascontiguousarray(self.ox), np.ascontiguousarray(self.oy), self.margin)
        if segmap is None:
            return out, None
        labels = np.ascontiguousarray(labels, dtype=np.int64)
        counts = np.empty(len(labels), dtype=np.int64)
        _loops.own_pixels(segmap, labels, *bounds, counts, None, None)  # how many, then where
        pixels = int(counts.sum())
        rows, cols = np.empty(pixels, dtype=np.int64), np.empty(pixels, dtype=np.int64)
        _loops.own_pixels(segmap, labels, *bounds, counts, rows, cols)
        boxes = np.repeat(np.arange(len(labels)), counts)
        return out, (rows + self.oy[boxes], cols + self.ox[boxes], boxes)


def _is_pixel_buffer_full(exc: Exception) -> bool:
    return "pixel buffer full" in str(exc).lower()


def _extract(data, error, mask, *, threshold: float, kernel: np.ndarray, settings: DetectionSettings,
             segmentation_map: bool = False):
    """One ``sep.extract`` call with the detection settings (threshold in units of ``error``).

    SEP allocates (and touches) its whole pixel stack on every call, ~45 bytes a pixel:
    the stack starts at :data:`INITIAL_PIXEL_STACK` pixels and grows tenfold, up to
    ``settings.pixel_stack``, only when SEP says it is full (the objects do not depend on
    its size, only whether it overflows). An array never has more active pixels than
    pixels, so small arrays (blend cut-outs) get a small stack.
    """
    largest = min(settings.pixel_stack, max(1024, data.size))
    stack = min(largest, INITIAL_PIXEL_STACK)
    while True:
        try:
            with sep_limits(pixel_stack=stack):
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
        except Exception as exc:  # SEP raises plain Exception for its buffer overflows
            if stack >= largest or not _is_pixel_buffer_full(exc):
                raise
            log.debug("SEP pixel stack of %d full; trying %d", stack, min(largest, 10 * stack))
            stack = min(largest, 10 * stack)
