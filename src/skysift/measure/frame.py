"""One image from pixels to a measured catalog: the science in order.

background -> detection -> photometry -> astrometry -> calibration -> classification,
plus the per-image quality figures (seeing, depth) the ``images`` table records.
No I/O happens here; :mod:`skysift.pipeline.image` reads the image and hands it over.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from skysift.core import astrometry, calibration, classification, photometry, psf
from skysift.core import flags as F
from skysift.core.astrometry import ParsedWcs, WcsStatus
from skysift.core.background import Background, subtract_sky
from skysift.core.deblending import shift_objects
from skysift.core.detection import (
    DEFAULT_FILTER_FWHM_PX,
    detect,
    detection_kernel,
    noise_correlation_factor,
)
from skysift.core.photometry import measure
from skysift.heap import release_free_heap
from skysift.io.fits import Image, ImageInfo, build_wcs
from skysift.parallel.strips import Strip, map_forked, plan_strips, worth_splitting
from skysift.settings import Settings

if TYPE_CHECKING:
    from astropy.wcs import WCS

__all__ = [
    "GAUSSIAN_FLUX_WITHIN_FWHM",
    "Measurement",
    "PixelMeasurement",
    "SkySink",
    "combine",
    "detection_filter_fwhm",
    "finish_catalog",
    "header_float",
    "measure_image",
    "measure_pixels",
    "plausible_pixel_scale",
]

log = logging.getLogger(__name__)

#: Fraction of a Gaussian PSF's flux inside a circular aperture of radius FWHM.
GAUSSIAN_FLUX_WITHIN_FWHM = 1.0 - 2.0 ** -4.0


@dataclass
class Measurement:
    """Catalog columns (one array per column) and per-image figures."""

    columns: dict[str, np.ndarray]
    stats: dict[str, object]
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class PixelMeasurement:
    """What one pixel array (a whole image or one tile) yields before WCS and calibration.

    Positions are in the array's own 0-based coordinates until :meth:`shifted`.
    """

    columns: dict[str, np.ndarray]
    global_level: float
    global_rms: float
    threshold_sigma: float
    crowded: bool
    stamps: dict[int, np.ndarray]  # source row -> background-subtracted stamp, for the seeing fit
    timings: dict[str, float]
    noise_correlation_factor: float = 1.0  # the detection threshold's scale (skysift.core.detection)
    filter_fwhm_px: float = DEFAULT_FILTER_FWHM_PX  # FWHM of the detection filter (detection_filter_fwhm)

    def take(self, rows: np.ndarray) -> PixelMeasurement:
        """These rows only (indices or a boolean mask), in this order; stamps follow their rows."""
        rows = np.flatnonzero(rows) if rows.dtype == bool else rows
        columns = {name: values[rows] for name, values in self.columns.items()}
        position = {int(old): new for new, old in enumerate(rows)}
        stamps = {position[i]: stamp for i, stamp in self.stamps.items() if i in position}
        return replace(self, columns=columns, stamps=stamps)

    def shifted(self, dx: int, dy: int) -> PixelMeasurement:
        """Positions moved by (dx, dy) pixels, from a tile's coordinates into the image's."""
        columns = dict(self.columns, x=self.columns["x"] + dx, y=self.columns["y"] + dy)
        return replace(self, columns=columns)

    def in_catalog_order(self) -> PixelMeasurement:
        """Rows sorted by position (y, then x): the same order however the frame was cut up."""
        return self.take(np.lexsort((self.columns["x"], self.columns["y"])))


def combine(parts: list[PixelMeasurement]) -> PixelMeasurement:
    """One catalog from disjoint parts of a frame (strips or tiles), in catalog order.

    Each part kept seeing-fit stamps for its brightest clean stars; the combined
    catalog keeps those a whole-frame run would have kept.
    """
    columns = {name: np.concatenate([p.columns[name] for p in parts]) for name in parts[0].columns}
    stamps, offset = {}, 0
    for part in parts:
        stamps.update({offset + i: s for i, s in part.stamps.items()})
        offset += len(part.columns["x"])
    best = sorted(stamps, key=lambda i: -columns["snr"][i])[: psf.CANDIDATE_STARS]
    timings = {k: sum(p.timings.get(k, 0.0) for p in parts) for k in ("background_s", "detect_s", "measure_s")}
    combined = PixelMeasurement(
        columns=columns,
        global_level=float(np.median([p.global_level for p in parts])),
        global_rms=float(np.median([p.global_rms for p in parts])),
        threshold_sigma=max(p.threshold_sigma for p in parts),
        crowded=any(p.crowded for p in parts),
        stamps={i: stamps[i] for i in best},
        timings=timings,
        noise_correlation_factor=float(np.median([p.noise_correlation_factor for p in parts])),
        filter_fwhm_px=parts[0].filter_fwhm_px,
    )
    return combined.in_catalog_order()


def header_float(header, *keys: str) -> float | None:
    """The first of ``keys`` in ``header`` holding a finite positive number, else None."""
    for key in keys:
        try:
            value = float(header[key])
        except (KeyError, TypeError, ValueError):
            continue
        if np.isfinite(value) and value > 0:
            return value
    return None


def detection_filter_fwhm(header, settings: Settings, wcs: WCS | None) -> tuple[float, str]:
    """FWHM (pixels) of the matched detection filter, and where it came from.

    ``settings.detection.filter_fwhm_px`` when set (``'settings'``); else the seeing the
    header records (:func:`skysift.core.psf.header_seeing`: ``SEEING``, ``FWHM`` or ``PSF_FWHM``,
    in arcsec unless the card says pixels, converted with the pixel scale of the header's
    celestial WCS ``wcs``, :func:`~skysift.io.fits.build_wcs` of ``header``, when that scale is
    plausible, else with a ``PIXSCALE``-like card; the keyword is returned); else
    :data:`~skysift.core.detection.DEFAULT_FILTER_FWHM_PX` (``'default'``).
    """
    if settings.detection.filter_fwhm_px:
        return float(settings.detection.filter_fwhm_px), "settings"
    seeing = psf.header_seeing(header, plausible_pixel_scale(wcs, settings))
    if seeing is None:
        return DEFAULT_FILTER_FWHM_PX, "default"
    return seeing.fwhm_px, seeing.keyword


def plausible_pixel_scale(wcs: WCS | None, settings: Settings) -> float | None:
    """The pixel scale (arcsec/pixel) of a header's celestial WCS (:func:`~skysift.io.fits.build_wcs`),
    if within the plausible scales of :class:`~skysift.settings.WcsSettings`."""
    try:
        scale = astrometry.pixel_scale_arcsec(wcs) if wcs is not None else None
    except Exception:  # a WCS astropy reads but cannot transform: no scale from it
        return None
    if scale is None or not np.isfinite(scale):
        return None
    return scale if settings.wcs.min_pixel_scale_arcsec <= scale <= settings.wcs.max_pixel_scale_arcsec else None


def _filter_fwhm(header, settings: Settings, wcs: WCS | None) -> float:
    filter_fwhm_px, origin = detection_filter_fwhm(header, settings, wcs)
    log.debug("detection filter FWHM %.2f px (%s)", filter_fwhm_px, origin)
    return filter_fwhm_px


#: Called with an image's sky-subtracted pixels, their noise map and mask (None: nothing masked) as
#: soon as its sky is subtracted, before detection: ``subtract_sky``'s results, to be copied, not kept.
SkySink = Callable[[np.ndarray, np.ndarray, np.ndarray | None], None]


def measure_pixels(data: np.ndarray, mask: np.ndarray, header, settings: Settings, *, workers: int = 1,
                   filter_fwhm_px: float | None = None, on_sky: SkySink | None = None) -> PixelMeasurement:
    """Background, detection and photometry of one pixel array (subtracted in place).

    With ``workers`` > 1 a large frame is detected in strips by forked processes
    (:mod:`skysift.parallel.strips`); the catalog is the same as with one. The detection filter's
    FWHM is ``filter_fwhm_px`` when given, else :func:`detection_filter_fwhm` of ``header`` (whose WCS
    is parsed for it: a caller that has parsed it gives ``filter_fwhm_px``). ``on_sky`` gets the
    sky-subtracted frame (:data:`SkySink`).
    """
    gain = settings.photometry.gain_e_per_count or header_float(header, "GAIN", "EGAIN", "CCDGAIN")
    saturation = settings.photometry.saturation_level or header_float(header, "SATURATE", "SATLEVEL")
    if filter_fwhm_px is None:
        filter_fwhm_px = _filter_fwhm(header, settings, build_wcs(header))

    t = time.perf_counter()
    bkg, mask = subtract_sky(data, mask, settings.background)
    background_s = time.perf_counter() - t
    if on_sky is not None:
        on_sky(data, bkg.rms, mask)

    # measured once on the whole array, so that every strip detects at the frame's threshold
    noise_factor = noise_correlation_factor(data, bkg.rms, mask, detection_kernel(settings.detection, filter_fwhm_px))
    in_strip = partial(_measure_strip, data=data, mask=mask, bkg=bkg, settings=settings, gain=gain,
                       saturation=saturation, noise_factor=noise_factor, filter_fwhm_px=filter_fwhm_px)
    parts = None
    if worth_splitting(data.shape, workers):
        parts = map_forked(in_strip, plan_strips(data.shape[0], workers), workers)
        # a source too large for the strip margins, or a crowded strip (whose raised
        # threshold would differ from the frame's): measure the frame in one piece
        if any(part is None or part.crowded for part in parts):
            parts = None
    pixels = combine(parts or [in_strip(Strip.whole(data.shape[0]))])
    pixels.timings["background_s"] = background_s
    return pixels


def _measure_strip(strip: Strip, *, data: np.ndarray, mask: np.ndarray | None, bkg: Background, settings: Settings,
                   gain: float | None, saturation: float | None, noise_factor: float,
                   filter_fwhm_px: float) -> PixelMeasurement | None:
    """Detect in ``strip``, measure the sources centred in its core on the whole frame.

    None when such a source reaches the strip's cut edge, where it may be truncated.
    """
    t = time.perf_counter()
    rows = strip.rows
    detections = detect(data[rows], bkg.rms[rows], None if mask is None else mask[rows], settings.detection,
                        filter_fwhm_px=filter_fwhm_px, noise_factor=noise_factor, segmentation_map=True,
                        trim_heap=not strip.is_whole)
    keep, truncated = strip.owned(detections.objects, guard_px=detections.filter_margin_px + 1)
    detected = shift_objects(detections.objects, 0, strip.ry0)
    objects = detected[keep]
    # neighbours are corrected in every aperture (photometry.measure): the strip must know them all
    if truncated or strip.reaches_cut(objects["y"], photometry.reach_px(objects, settings.photometry, data.shape),
                                      guard_px=detections.filter_margin_px + 1):
        return None
    seg_ids, crowded, threshold_sigma = detections.seg_ids[keep], detections.crowded, detections.threshold_sigma
    segmap, companions = detections.segmap, detections.companions
    del detections  # its maps of the strip are not kept beside the frame's (18 + 9 MiB for a 4096^2 frame's strip)
    if segmap.shape != data.shape:  # one map at a time, each strip copy freed as its frame copy is made
        release_free_heap()  # what detection freed, before the copies ...
        segmap = strip.on_frame(segmap)
        companions = strip.on_frame(companions)
        release_free_heap()  # ... and the strip's maps after them
    detect_s = time.perf_counter() - t

    t = time.perf_counter()
    cols = measure(
        data, objects, bkg.rms, mask, settings.photometry,
        gain=gain, background_level=bkg.global_level, saturation_level=saturation, neighbours=detected,
        segmap=segmap, seg_ids=seg_ids, companions=companions,
    )
    del segmap, companions
    if crowded:
        cols["flags"] = cols["flags"] | F.CROWDED
    stamps = psf.candidate_stamps(data, cols)
    timings = {"detect_s": detect_s, "measure_s": time.perf_counter() - t}
    return PixelMeasurement(cols, bkg.global_level, bkg.global_rms, threshold_sigma, crowded,
                            stamps, timings, noise_factor, filter_fwhm_px)


def finish_catalog(pixels: PixelMeasurement, wcs, info: ImageInfo, header, settings: Settings, *,
                   parsed_wcs: ParsedWcs | None = None) -> Measurement:
    """Sky positions, calibration, star/galaxy scores, seeing and depth for a whole image.

    Sky positions (and the footprint, HEALPix index and sizes in arcsec) come only from a
    WCS that :func:`~skysift.core.astrometry.validate_celestial_wcs` trusts; otherwise they are
    null and the stats say why (``wcs_status``, ``wcs_message``). When the header names sky
    axes whose WCS cannot be trusted (``wcs_invalid``) every source also carries
    :data:`~skysift.core.flags.WCS_INVALID`: a position was meant and is withheld. An image
    without celestial axes at all (``none``: blank CTYPEs, a lab or guider frame) gives a
    pixel catalog, as Source Extractor does, with no flag: nothing is wrong with its sources,
    they simply have no sky position. Pixel positions and fluxes are measured either way.
    ``parsed_wcs``: :func:`~skysift.core.astrometry.read_wcs` of ``header``, when the caller has it.
    """
    t = time.perf_counter()
    cols = pixels.columns
    n = len(cols["x"])
    check = astrometry.validate_celestial_wcs(wcs, header, (info.ny, info.nx),
                                              min_scale_arcsec=settings.wcs.min_pixel_scale_arcsec,
                                              max_scale_arcsec=settings.wcs.max_pixel_scale_arcsec,
                                              parsed=parsed_wcs)
    if check.valid:
        ra, dec = astrometry.pixel_to_sky(wcs, cols["x"], cols["y"])
        foot = astrometry.footprint(wcs, info.nx, info.ny)
        scale = foot.pixel_scale_arcsec
        cols["healpix"] = astrometry.healpix_index(ra, dec)
    else:
        ra, dec, foot, scale = np.full(n, np.nan), np.full(n, np.nan), None, np.nan
        cols["healpix"] = np.full(n, None, dtype=object)
        if check.status == WcsStatus.INVALID:
            log.warning("%s: sky positions left null, the WCS is not trusted: %s", info.uri, check.message)
            cols["flags"] = cols["flags"] | F.WCS_INVALID
        else:
            log.info("%s: no celestial WCS: a pixel catalog (sky positions null)", info.uri)
    cols["ra"], cols["dec"] = ra, dec
    cols["pos_err_arcsec"] = (np.hypot(cols["x_err"], cols["y_err"]) * scale).astype(np.float32)
    cols["fwhm_arcsec"] = (cols["fwhm_px"] * scale).astype(np.float32)
    # read from the primary and image headers together when the image was inspected
    zp = calibration.ZeroPoint(info.zero_point_ab, info.zero_point_source) if info.zero_point_source else None
    cols.update(calibration.calibrate(cols["flux"], cols["flux_err"], zp))
    locus = classification.stellar_locus(cols["half_light_radius_px"], cols["snr"], cols["flags"])
    cols["star_score"] = classification.star_score(cols["half_light_radius_px"], cols["snr"], locus, cols["flags"])
    seeing = psf.seeing_fwhm_px(pixels.stamps, cols["star_score"], cols["fwhm_px"])
    limit_radius = seeing if seeing else pixels.filter_fwhm_px
    # correlated noise is larger in an aperture than the per-pixel RMS says, by about the factor
    # the detection threshold is scaled by (the matched filter and the aperture have one scale)
    limit_flux = (5.0 * pixels.global_rms * pixels.noise_correlation_factor * np.sqrt(np.pi) * limit_radius
                  / GAUSSIAN_FLUX_WITHIN_FWHM)
    stats: dict[str, object] = {
        "n_sources": len(cols["x"]),
        "background_level": pixels.global_level,
        "background_rms": pixels.global_rms,
        "pixel_scale_arcsec": scale if foot else None,
        "seeing_fwhm_px": seeing,
        "seeing_fwhm_arcsec": seeing * scale if seeing and foot else None,
        "zero_point_ab": zp.zp_ab if zp else None,
        "zero_point_source": zp.source if zp else None,
        "limit_flux_5sigma": float(limit_flux),
        "limit_mag_5sigma": calibration.magnitude(float(limit_flux), zp),
        "center_ra": foot.center_ra if foot else None,
        "center_dec": foot.center_dec if foot else None,
        "radius_deg": foot.radius_deg if foot else None,
        "corners_ra": foot.corners_ra if foot else None,
        "corners_dec": foot.corners_dec if foot else None,
        "wcs_status": str(check.status),
        "wcs_message": check.message,
        "detection_threshold_sigma": pixels.threshold_sigma,
        "noise_correlation_factor": pixels.noise_correlation_factor,
        "crowded": pixels.crowded,
        "filter_fwhm_px": pixels.filter_fwhm_px,
        "aperture_radii_px": list(settings.photometry.aperture_radii_px),
    }
    timings = dict(pixels.timings)
    timings["catalog_s"] = time.perf_counter() - t
    return Measurement(columns=cols, stats=stats, timings=timings)


def measure_image(image: Image, settings: Settings, *, workers: int = 1, on_sky: SkySink | None = None) -> Measurement:
    """Background, detection and all per-source measurements of an image in memory (sky
    positions only when its celestial WCS is trusted, see :func:`finish_catalog`).

    The image's pixel array is background-subtracted in place (it is not needed
    afterwards and this saves a full copy of a large image); ``on_sky`` sees it subtracted (:data:`SkySink`).
    """
    pixels = measure_pixels(image.data, image.mask, image.header, settings, workers=workers,
                            filter_fwhm_px=_filter_fwhm(image.header, settings, image.wcs), on_sky=on_sky)
    return finish_catalog(pixels, image.wcs, image.info, image.header, settings, parsed_wcs=image.parsed_wcs)
