"""One celestial image from pixels to a measured catalog: the science in order.

background -> detection -> photometry -> astrometry -> calibration -> classification,
plus the per-image quality figures (seeing, depth) the ``images`` table records.
No I/O happens here; :mod:`skysift.pipeline` reads the image and hands it over.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from . import astrometry, calibration, classification, psf
from . import flags as F
from .background import estimate_background
from .detection import detect
from .fitsio import Image, ImageInfo
from .photometry import measure
from .settings import Settings

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

    def shifted(self, dx: int, dy: int, keep: np.ndarray) -> PixelMeasurement:
        """Rows in ``keep`` only, with positions moved by (dx, dy) into image coordinates."""
        columns = {name: values[keep] for name, values in self.columns.items()}
        columns["x"] = columns["x"] + dx
        columns["y"] = columns["y"] + dy
        new_index = np.cumsum(keep) - 1
        stamps = {int(new_index[i]): stamp for i, stamp in self.stamps.items() if keep[i]}
        return PixelMeasurement(columns, self.global_level, self.global_rms, self.threshold_sigma,
                                self.crowded, stamps, self.timings)


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


def measure_pixels(data: np.ndarray, mask: np.ndarray, header, settings: Settings) -> PixelMeasurement:
    """Background, detection and photometry of one pixel array (subtracted in place)."""
    timings: dict[str, float] = {}
    gain = settings.photometry.gain_e_per_count or header_float(header, "GAIN", "EGAIN", "CCDGAIN")
    saturation = settings.photometry.saturation_level or header_float(header, "SATURATE", "SATLEVEL")

    t = time.perf_counter()
    bkg = estimate_background(data, mask, settings.background)
    bkg.subtract_from(data)
    data[mask] = 0.0
    timings["background_s"] = time.perf_counter() - t

    t = time.perf_counter()
    detections = detect(data, bkg.rms, mask, settings.detection)
    timings["detect_s"] = time.perf_counter() - t

    t = time.perf_counter()
    cols = measure(
        data, detections.objects, bkg.rms, mask, settings.photometry,
        gain=gain, background_level=bkg.global_level, saturation_level=saturation,
    )
    if detections.crowded:
        cols["flags"] = cols["flags"] | F.CROWDED
    stamps = psf.candidate_stamps(data, cols)
    timings["measure_s"] = time.perf_counter() - t
    return PixelMeasurement(cols, bkg.global_level, bkg.global_rms, detections.threshold_sigma,
                            detections.crowded, stamps, timings)


def finish_catalog(pixels: PixelMeasurement, wcs, info: ImageInfo, header, settings: Settings) -> Measurement:
    """Sky positions, calibration, star/galaxy scores, seeing and depth for a whole image."""
    t = time.perf_counter()
    cols = pixels.columns
    ra, dec = astrometry.pixel_to_sky(wcs, cols["x"], cols["y"])
    foot = astrometry.footprint(wcs, info.nx, info.ny)
    scale = foot.pixel_scale_arcsec
    cols["ra"], cols["dec"] = ra, dec
    cols["healpix"] = astrometry.healpix_index(ra, dec)
    cols["pos_err_arcsec"] = (np.hypot(cols["x_err"], cols["y_err"]) * scale).astype(np.float32)
    cols["fwhm_arcsec"] = (cols["fwhm_px"] * scale).astype(np.float32)
    zp = calibration.zero_point(header, info.exptime_s)
    cols.update(calibration.calibrate(cols["flux"], cols["flux_err"], zp))
    locus = classification.stellar_locus(cols["half_light_radius_px"], cols["snr"], cols["flags"])
    cols["star_score"] = classification.star_score(cols["half_light_radius_px"], cols["snr"], locus)
    seeing = psf.seeing_fwhm_px(pixels.stamps, cols["star_score"], cols["fwhm_px"])
    limit_radius = seeing if seeing else (settings.detection.filter_fwhm_px or 3.0)
    limit_flux = 5.0 * pixels.global_rms * np.sqrt(np.pi) * limit_radius / GAUSSIAN_FLUX_WITHIN_FWHM
    stats: dict[str, object] = {
        "n_sources": len(cols["x"]),
        "background_level": pixels.global_level,
        "background_rms": pixels.global_rms,
        "pixel_scale_arcsec": scale,
        "seeing_fwhm_px": seeing,
        "seeing_fwhm_arcsec": seeing * scale if seeing else None,
        "zero_point_ab": zp.zp_ab if zp else None,
        "zero_point_source": zp.source if zp else None,
        "limit_flux_5sigma": float(limit_flux),
        "limit_mag_5sigma": calibration.magnitude(float(limit_flux), zp),
        "center_ra": foot.center_ra,
        "center_dec": foot.center_dec,
        "radius_deg": foot.radius_deg,
        "corners_ra": foot.corners_ra,
        "corners_dec": foot.corners_dec,
        "detection_threshold_sigma": pixels.threshold_sigma,
        "crowded": pixels.crowded,
        "filter_fwhm_px": settings.detection.filter_fwhm_px or 3.0,
        "aperture_radii_px": list(settings.photometry.aperture_radii_px),
    }
    timings = dict(pixels.timings)
    timings["catalog_s"] = time.perf_counter() - t
    return Measurement(columns=cols, stats=stats, timings=timings)


def measure_image(image: Image, settings: Settings) -> Measurement:
    """Background, detection and all per-source measurements of a celestial image in memory.

    The image's pixel array is background-subtracted in place (it is not needed
    afterwards and this saves a full copy of a large image).
    """
    pixels = measure_pixels(image.data, image.mask, image.header, settings)
    return finish_catalog(pixels, image.wcs, image.info, image.header, settings)
