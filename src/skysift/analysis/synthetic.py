"""Synthetic skies with known truth: the yardstick for accuracy tests and benchmarks.

Point sources are Moffat PSFs (beta = 4.765, typical of atmospheric seeing) and
galaxies are PSF-convolved Sersic profiles; both are integrated over pixels by
oversampling, so the injected flux is the true flux in counts. Noise is Poisson in
electrons (sky + sources, through the gain) plus Gaussian read noise. The WCS is a
gnomonic projection with optional SIP distortion, and the truth table gives every
source's true pixel and sky position, flux, magnitude and optimal SNR.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.io import fits
from astropy.modeling.functional_models import Sersic2D
from astropy.wcs import WCS
from scipy.signal import fftconvolve

__all__ = [
    "MOFFAT_BETA",
    "OVERSAMPLE",
    "Sky",
    "SkySpec",
    "effective_area_px",
    "make_wcs",
    "moffat_stamp",
    "random_sources",
    "render",
    "sersic_stamp",
    "write_fits",
]

MOFFAT_BETA = 4.765
OVERSAMPLE = 5


@dataclass(frozen=True)
class SkySpec:
    """What to render. Fluxes follow from magnitudes through ``zero_point``."""

    nx: int = 1024
    ny: int = 1024
    fwhm_px: float = 3.0
    sky_counts: float = 200.0  # sky level per pixel, counts
    gain: float = 2.0  # electrons per count
    read_noise_e: float = 5.0
    zero_point: float = 28.0  # AB mag of one count
    saturation: float = 65000.0
    pixel_scale_arcsec: float = 0.4
    rotation_deg: float = 0.0
    sip: bool = True
    center_ra: float = 150.0
    center_dec: float = 2.2


def make_wcs(spec: SkySpec) -> WCS:
    """A TAN (optionally TAN-SIP) WCS centred on the image."""
    header = fits.Header()
    header["NAXIS"] = 2
    header["NAXIS1"], header["NAXIS2"] = spec.nx, spec.ny
    header["CTYPE1"] = "RA---TAN-SIP" if spec.sip else "RA---TAN"
    header["CTYPE2"] = "DEC--TAN-SIP" if spec.sip else "DEC--TAN"
    header["CRPIX1"], header["CRPIX2"] = (spec.nx + 1) / 2.0, (spec.ny + 1) / 2.0
    header["CRVAL1"], header["CRVAL2"] = spec.center_ra, spec.center_dec
    scale = spec.pixel_scale_arcsec / 3600.0
    angle = np.deg2rad(spec.rotation_deg)
    header["CD1_1"], header["CD1_2"] = -scale * np.cos(angle), scale * np.sin(angle)
    header["CD2_1"], header["CD2_2"] = scale * np.sin(angle), scale * np.cos(angle)
    header["RADESYS"] = "ICRS"
    if spec.sip:
        # Mild barrel distortion: ~1.5 px at the corners of a 1k image.
        header["A_ORDER"] = header["B_ORDER"] = 3
        header["A_3_0"] = header["A_1_2"] = 2.0e-9 * (1024 / max(spec.nx, spec.ny)) ** 2
        header["B_0_3"] = header["B_2_1"] = 2.0e-9 * (1024 / max(spec.nx, spec.ny)) ** 2
        header["A_2_0"], header["B_0_2"] = 1.0e-7, -1.0e-7
    return WCS(header)


def moffat_stamp(fwhm_px: float, dx: float, dy: float, half: int, oversample: int = OVERSAMPLE) -> np.ndarray:
    """Unit-flux Moffat PSF integrated over the pixels of a (2*half+1)^2 stamp.

    ``dx, dy`` is the sub-pixel offset of the centre from the stamp's central pixel.
    The stamp is normalised to the PSF's total flux, so light beyond it is lost as it
    is on a real detector (for ``half >= 4 FWHM`` that is below 0.1%).
    """
    alpha = fwhm_px / (2.0 * np.sqrt(2.0 ** (1.0 / MOFFAT_BETA) - 1.0))
    sub = (np.arange((2 * half + 1) * oversample) + 0.5) / oversample - half - 0.5
    xx = sub[None, :] - dx
    yy = sub[:, None] - dy
    profile = (MOFFAT_BETA - 1.0) / (np.pi * alpha**2) * (1.0 + (xx**2 + yy**2) / alpha**2) ** (-MOFFAT_BETA)
    n = 2 * half + 1
    return profile.reshape(n, oversample, n, oversample).sum(axis=(1, 3)) / oversample**2


def effective_area_px(fwhm_px: float) -> float:
    """Noise-equivalent area 1 / sum(P^2) of the PSF (pixels), for optimal SNR."""
    stamp = moffat_stamp(fwhm_px, 0.0, 0.0, int(np.ceil(4 * fwhm_px)))
    return float(1.0 / np.sum(stamp**2))


def sersic_stamp(flux: float, r_eff_px: float, n: float, ellip: float, theta: float, fwhm_px: float,
                 dx: float, dy: float, half: int, oversample: int = 3) -> np.ndarray:
    """A Sersic galaxy of total ``flux`` convolved with the Moffat PSF, pixel-integrated."""
    size = (2 * half + 1) * oversample
    sub = (np.arange(size) + 0.5) / oversample - half - 0.5
    xx, yy = np.meshgrid(sub, sub)
    model = Sersic2D(amplitude=1.0, r_eff=r_eff_px, n=n, x_0=dx, y_0=dy, ellip=ellip, theta=theta)
    image = model(xx, yy)
    image = image.reshape(2 * half + 1, oversample, 2 * half + 1, oversample).sum(axis=(1, 3))
    psf = moffat_stamp(fwhm_px, 0.0, 0.0, int(np.ceil(3 * fwhm_px)))
    image = fftconvolve(image, psf, mode="same")
    return np.clip(image, 0, None) * (flux / image.sum())


@dataclass
class Sky:
    data: np.ndarray  # float32 counts
    header: fits.Header
    truth: dict[str, np.ndarray]


def _add(canvas: np.ndarray, stamp: np.ndarray, xc: int, yc: int) -> None:
    half = stamp.shape[0] // 2
    ny, nx = canvas.shape
    x0, x1, y0, y1 = xc - half, xc + half + 1, yc - half, yc + half + 1
    sx0, sy0 = max(0, -x0), max(0, -y0)
    sx1 = stamp.shape[1] - max(0, x1 - nx)
    sy1 = stamp.shape[0] - max(0, y1 - ny)
    if sx0 >= sx1 or sy0 >= sy1:
        return
    canvas[max(0, y0) : min(ny, y1), max(0, x0) : min(nx, x1)] += stamp[sy0:sy1, sx0:sx1]


def render(spec: SkySpec, stars: dict[str, np.ndarray], galaxies: dict[str, np.ndarray],
           rng: np.random.Generator, header_extra: dict | None = None) -> Sky:
    """Render stars (x, y, mag) and galaxies (x, y, mag, r_eff, n, ellip, theta) with noise.

    Positions are 0-based pixel coordinates. Returns the noisy image, a FITS header
    with WCS, gain, saturation and zero point, and the truth columns.
    """
    canvas = np.zeros((spec.ny, spec.nx), dtype=np.float64)
    half_psf = int(np.ceil(4 * spec.fwhm_px))
    star_flux = 10.0 ** (-0.4 * (stars["mag"] - spec.zero_point))
    for x, y, f in zip(stars["x"], stars["y"], star_flux, strict=True):
        xc, yc = int(np.round(x)), int(np.round(y))
        _add(canvas, f * moffat_stamp(spec.fwhm_px, x - xc, y - yc, half_psf), xc, yc)
    gal_flux = 10.0 ** (-0.4 * (galaxies["mag"] - spec.zero_point))
    for i, f in enumerate(gal_flux):
        x, y = galaxies["x"][i], galaxies["y"][i]
        xc, yc = int(np.round(x)), int(np.round(y))
        half = int(np.ceil(max(5 * galaxies["r_eff"][i], 3 * spec.fwhm_px)))
        stamp = sersic_stamp(f, galaxies["r_eff"][i], galaxies["n"][i], galaxies["ellip"][i],
                             galaxies["theta"][i], spec.fwhm_px, x - xc, y - yc, half)
        _add(canvas, stamp, xc, yc)
    electrons = rng.poisson((canvas + spec.sky_counts) * spec.gain).astype(np.float64)
    electrons += rng.normal(0.0, spec.read_noise_e, size=canvas.shape)
    data = np.minimum(electrons / spec.gain, spec.saturation).astype(np.float32)

    wcs = make_wcs(spec)
    header = wcs.to_header(relax=True)
    header["GAIN"] = (spec.gain, "electrons per count")
    header["SATURATE"] = (spec.saturation, "counts")
    header["MAGZERO"] = (spec.zero_point, "AB mag of one count")
    header["SEEING"] = (spec.fwhm_px * spec.pixel_scale_arcsec, "FWHM, arcsec")
    for key, value in (header_extra or {}).items():
        header[key] = value

    noise_var = spec.sky_counts / spec.gain + (spec.read_noise_e / spec.gain) ** 2  # counts^2 per pixel
    area = effective_area_px(spec.fwhm_px)
    all_x = np.concatenate([stars["x"], galaxies["x"]])
    all_y = np.concatenate([stars["y"], galaxies["y"]])
    flux = np.concatenate([star_flux, gal_flux])
    ra, dec = wcs.all_pix2world(all_x, all_y, 0) if len(all_x) else (np.zeros(0), np.zeros(0))
    truth = {
        "kind": np.array(["star"] * len(star_flux) + ["galaxy"] * len(gal_flux)),
        "x": all_x, "y": all_y, "ra": np.asarray(ra), "dec": np.asarray(dec),
        "mag": np.concatenate([stars["mag"], galaxies["mag"]]),
        "flux": flux,
        "r_eff_px": np.concatenate([np.zeros(len(star_flux)), galaxies["r_eff"]]),
        "snr_true": flux / np.sqrt(noise_var * area + flux / spec.gain),
    }
    return Sky(data=data, header=header, truth=truth)


def random_sources(spec: SkySpec, n_stars: int, n_galaxies: int, rng: np.random.Generator,
                   mag_range: tuple[float, float] = (16.0, 24.0), margin_px: float = 0.0) -> tuple[dict, dict]:
    """Stars and galaxies uniform in position and in magnitude (a standard injection design)."""
    def positions(n):
        return (rng.uniform(margin_px, spec.nx - 1 - margin_px, n), rng.uniform(margin_px, spec.ny - 1 - margin_px, n))

    sx, sy = positions(n_stars)
    gx, gy = positions(n_galaxies)
    stars = {"x": sx, "y": sy, "mag": rng.uniform(*mag_range, n_stars)}
    galaxies = {
        "x": gx, "y": gy, "mag": rng.uniform(mag_range[0] + 1.0, mag_range[1], n_galaxies),
        "r_eff": rng.uniform(1.5, 5.0, n_galaxies) * spec.fwhm_px / 2.0,
        "n": rng.choice([1.0, 4.0], n_galaxies, p=[0.7, 0.3]),
        "ellip": rng.uniform(0.0, 0.6, n_galaxies),
        "theta": rng.uniform(0, np.pi, n_galaxies),
    }
    return stars, galaxies


def write_fits(path, sky: Sky, *, compress: bool = False) -> None:
    """Write a rendered sky as a plain (or Rice tile-compressed, lossless-quantised) FITS file."""
    if compress:
        hdul = fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(sky.data, sky.header, compression_type="RICE_1", quantize_level=0.0)])
    else:
        hdul = fits.HDUList([fits.PrimaryHDU(sky.data, sky.header)])
    hdul.writeto(path, overwrite=True)
