"""Completeness of a real image from artificial stars: how faint can we detect?

Stars with the image's own PSF (a Moffat of the measured seeing, beta 4.765) are
added to the image at random positions, with Poisson noise through the gain, and
the image is measured again with the same code and settings as ``skysift run``
(:func:`skysift.measure.frame.measure_image`). An injected star counts as recovered
when a detection lies within ``max(1 px, FWHM / 2)`` of it with a Kron flux within
a factor :data:`FLUX_TOLERANCE` of the injected flux (so a faint star dropped on a
bright one is not credited to the bright one). Stars of one round keep
:data:`MIN_SEPARATION_FWHM` seeing FWHMs apart so the test does not make its own
crowding; several rounds build up the numbers.

The completeness curve ``C(m)`` is fitted, unbinned, by maximum likelihood with the
Fleming et al. (1995, AJ 109, 1044) form scaled by a plateau ``c``::

    C(m) = c / 2 * (1 - a (m - m0) / sqrt(1 + a^2 (m - m0)^2))

and the 50% and 90% limiting magnitudes are where the fitted curve falls to 50% and
90% of its bright-end plateau ``c``. The plateau itself (reported with the fit) is
below one by the fraction of the image where a star lands on another source and is
lost to blending: ~10% on the sample survey.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import numpy as np
import pyarrow as pa
from scipy.optimize import minimize
from scipy.spatial import cKDTree

from skysift.analysis.synthetic import _add, moffat_stamp
from skysift.catalog.analysis_tables import INJECTIONS_SCHEMA, write_rows
from skysift.catalog.records import WcsKind
from skysift.catalog.tables import LocalTables
from skysift.core.psf import header_seeing
from skysift.errors import SkysiftError
from skysift.io.fits import Image, read_image
from skysift.measure.frame import header_float, measure_image, plausible_pixel_scale
from skysift.settings import Settings

__all__ = [
    "EDGE_MARGIN_FWHM",
    "FLUX_TOLERANCE",
    "MIN_SEPARATION_FWHM",
    "CompletenessError",
    "CompletenessFit",
    "CompletenessResult",
    "binned_curve",
    "fit_completeness",
    "inject_stars",
    "random_positions",
    "record_completeness",
    "recovered_stars",
    "run_completeness",
]

log = logging.getLogger(__name__)

FLUX_TOLERANCE = 2.5
MIN_SEPARATION_FWHM = 12.0
EDGE_MARGIN_FWHM = 3.0


class CompletenessError(SkysiftError):
    """The artificial-star test cannot run on this image."""

    reason = "completeness_failed"


@dataclass(frozen=True)
class CompletenessFit:
    """Fitted curve: plateau (bright-end completeness), steepness (1/mag), centre and limits (mag)."""

    plateau: float
    steepness: float
    centre_mag: float
    mag50: float
    mag90: float

    def __call__(self, mag: np.ndarray) -> np.ndarray:
        """Expected recovered fraction at ``mag``."""
        return _curve(np.array([self.plateau, self.steepness, self.centre_mag]), np.asarray(mag, float))


def _curve(params: np.ndarray, mag: np.ndarray) -> np.ndarray:
    plateau, steepness, centre = params
    x = mag - centre
    return plateau * 0.5 * (1.0 - steepness * x / np.sqrt(1.0 + (steepness * x) ** 2))


def fit_completeness(mag: np.ndarray, recovered: np.ndarray) -> CompletenessFit:
    """Maximum-likelihood fit of the completeness curve to per-star outcomes.

    Parameters
    ----------
    mag : ndarray
        Injected (or true) magnitudes.
    recovered : ndarray of bool
        Whether each star was detected.

    Raises
    ------
    CompletenessError
        Fewer than 20 stars, or the stars were all found (or all lost): no transition
        to fit inside the tested magnitude range.
    """
    mag, hit = np.asarray(mag, float), np.asarray(recovered, bool)
    if mag.size < 20 or hit.all() or not hit.any():
        raise CompletenessError(
            f"cannot fit a completeness curve to {mag.size} stars of which {int(hit.sum())} were recovered: "
            "widen the magnitude range or inject more stars"
        )

    def nll(params: np.ndarray) -> float:
        p = np.clip(_curve(params, mag), 1e-9, 1 - 1e-9)
        return -float(np.sum(np.where(hit, np.log(p), np.log1p(-p))))

    start = np.array([0.99, 3.0, float(np.median(mag))])
    bounds = [(0.5, 1.0), (0.3, 50.0), (mag.min() - 2.0, mag.max() + 2.0)]
    params = minimize(nll, start, method="L-BFGS-B", bounds=bounds).x
    plateau, steepness, centre = (float(v) for v in params)
    # C = plateau * f with f = 0.5 at the centre and f = 0.9 where steepness * (m - centre) = -4/3
    return CompletenessFit(plateau, steepness, centre, centre, centre - 4.0 / (3.0 * steepness))


@dataclass
class CompletenessResult:
    """Artificial-star test of one image (magnitudes AB when it has a zero point)."""

    image_id: str
    uri: str
    seeing_fwhm_px: float
    zero_point_ab: float | None
    mag_system: str  # "AB" or "instrumental" (-2.5 log10 counts)
    mag50: float | None
    mag90: float | None
    fit: dict
    bins: list[dict] = field(default_factory=list)  # mag_lo, mag_hi, n_injected, n_recovered, completeness
    injections: pa.Table | None = None

    def to_json(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k != "injections"}
        out["n_injected"] = 0 if self.injections is None else self.injections.num_rows
        return out


def random_positions(nx: int, ny: int, n: int, min_sep_px: float, margin_px: float,
                     rng: np.random.Generator) -> np.ndarray:
    """Up to ``n`` uniform positions (x, y) inside the margins, at least ``min_sep_px`` apart."""
    picked: list[tuple[float, float]] = []
    for _ in range(20 * n):
        if len(picked) == n:
            break
        x, y = rng.uniform(margin_px, nx - 1 - margin_px), rng.uniform(margin_px, ny - 1 - margin_px)
        if all((x - px) ** 2 + (y - py) ** 2 >= min_sep_px**2 for px, py in picked):
            picked.append((x, y))
    return np.array(picked, dtype=float).reshape(-1, 2)


def inject_stars(data: np.ndarray, xy: np.ndarray, flux: np.ndarray, fwhm_px: float, gain: float | None,
                 rng: np.random.Generator) -> np.ndarray:
    """A copy of ``data`` with Moffat stars added (counts), with their Poisson noise.

    Parameters
    ----------
    data : ndarray
        Image, counts.
    xy : ndarray, shape (n, 2)
        0-based positions, pixels.
    flux : ndarray
        Total fluxes, counts.
    fwhm_px : float
        Moffat FWHM, pixels.
    gain : float or None
        Electrons per count; None adds no photon noise.
    """
    stars = np.zeros(data.shape, dtype=np.float64)
    half = int(np.ceil(4 * fwhm_px))
    for (x, y), f in zip(xy, flux, strict=True):
        xc, yc = round(x), round(y)
        _add(stars, f * moffat_stamp(fwhm_px, x - xc, y - yc, half), xc, yc)
    if gain:
        stars = rng.poisson(stars * gain) / gain
    return (data + stars).astype(np.float32)


def _magnitudes(flux: np.ndarray, zp: float | None) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flux > 0, -2.5 * np.log10(flux) + (zp or 0.0), np.nan)


def recovered_stars(catalog: dict[str, np.ndarray] | pa.Table, xy: np.ndarray, flux: np.ndarray,
                    radius_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Which stars of known position and flux a measured catalog recovered.

    Parameters
    ----------
    catalog : dict of arrays or pyarrow.Table
        Detections with ``x``, ``y`` (pix) and ``flux`` (counts).
    xy : ndarray, shape (n, 2)
        Star positions, 0-based pixels.
    flux : ndarray
        Star fluxes, counts.
    radius_px : float
        Match radius, pixels.

    Returns
    -------
    recovered : ndarray of bool
        A detection within ``radius_px`` with a flux within :data:`FLUX_TOLERANCE` of the star's.
    flux_measured : ndarray
        That detection's flux (counts), NaN where none was within the radius.
    """
    x, y, measured_flux = (np.asarray(catalog[k]) for k in ("x", "y", "flux"))
    measured = np.full(len(xy), np.nan)
    if len(x) == 0:
        return np.zeros(len(xy), bool), measured
    dist, index = cKDTree(np.c_[x, y]).query(xy)
    near = dist <= radius_px
    measured[near] = measured_flux[index[near]]
    ratio = measured / flux
    ok = near & (ratio > 1.0 / FLUX_TOLERANCE) & (ratio < FLUX_TOLERANCE)
    return ok, measured


def _with_data(image: Image, data: np.ndarray) -> Image:
    return Image(data=data, mask=image.mask.copy(), header=image.header, wcs=image.wcs, info=image.info)


def run_completeness(uri: str, settings: Settings, *, seeing_fwhm_px: float | None = None,
                     mag_range: tuple[float, float] | None = None, n_per_round: int = 300, rounds: int = 4,
                     bin_width_mag: float = 0.25, seed: int = 0, hdu: int | str | None = None) -> CompletenessResult:
    """Artificial-star test of one image: completeness curve and 50%/90% limiting magnitudes.

    Parameters
    ----------
    uri : str
        The image (local path or s3:// URL).
    settings : Settings
        Detection and measurement settings (use the ones the catalog was made with).
    seeing_fwhm_px : float, optional
        FWHM of the injected Moffat stars, pixels; default: measured on the image
        (``images.seeing_fwhm_px``), else the header's SEEING, else the matched filter's FWHM.
    mag_range : (float, float), optional
        Injected magnitudes, uniform; default ``limit_mag_5sigma - 2.5`` to ``+ 1.5``.
    n_per_round, rounds : int
        Stars per detection run and number of runs.
    bin_width_mag : float
        Width of the reported curve's bins, mag.
    seed : int
        Random seed: the same seed gives the same stars.
    hdu : int or str, optional
        HDU to read.
    """
    rng = np.random.default_rng(seed)
    original = read_image(uri, hdu, max_pixels=settings.limits.max_pixels, survey_default=settings.survey,
                          limits=settings.limits.header_limits())
    if original.info.wcs_kind is WcsKind.HELIOPROJECTIVE:
        raise CompletenessError("a solar (helioprojective) image is indexed, not source-extracted", uri=original.info.uri)
    baseline = measure_image(_with_data(original, original.data.copy()), settings)
    zp = baseline.stats["zero_point_ab"]
    fwhm = (seeing_fwhm_px or baseline.stats["seeing_fwhm_px"]
            or _seeing_from_header(original, settings) or baseline.stats["filter_fwhm_px"])
    limit = -2.5 * np.log10(baseline.stats["limit_flux_5sigma"]) + (zp or 0.0)
    lo, hi = mag_range or (limit - 2.5, limit + 1.5)
    gain = settings.photometry.gain_e_per_count or header_float(original.header, "GAIN", "EGAIN", "CCDGAIN")
    radius = max(1.0, 0.5 * fwhm)
    nx, ny = original.info.nx, original.info.ny
    parts = []
    for k in range(rounds):
        xy = random_positions(nx, ny, n_per_round, MIN_SEPARATION_FWHM * fwhm, EDGE_MARGIN_FWHM * fwhm, rng)
        mag = rng.uniform(lo, hi, len(xy))
        flux = 10.0 ** (-0.4 * (mag - (zp or 0.0)))
        data = inject_stars(np.nan_to_num(original.data), xy, flux, fwhm, gain, rng)
        data[original.mask] = np.nan
        result = measure_image(_with_data(original, data), settings)
        hit, measured = recovered_stars(result.columns, xy, flux, radius)
        parts.append({"round": np.full(len(xy), k, np.int32), "x": xy[:, 0], "y": xy[:, 1], "flux": flux, "mag": mag,
                      "recovered": hit, "flux_measured": measured, "mag_measured": _magnitudes(measured, zp)})
        log.info("round %d: %d of %d injected stars recovered", k, int(hit.sum()), len(xy))
    cols = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    fit = fit_completeness(cols["mag"], cols["recovered"])
    n = len(cols["x"])
    cols.update(image_id=np.full(n, original.info.image_id, dtype=object), seeing_fwhm_px=np.full(n, fwhm),
                tested_at=[datetime.now(UTC)] * n)
    table = pa.Table.from_arrays([pa.array(cols[f.name], type=f.type, from_pandas=True) for f in INJECTIONS_SCHEMA],
                                 schema=INJECTIONS_SCHEMA)
    return CompletenessResult(
        image_id=original.info.image_id, uri=original.info.uri, seeing_fwhm_px=float(fwhm), zero_point_ab=zp,
        mag_system="AB" if zp is not None else "instrumental", mag50=fit.mag50, mag90=fit.mag90,
        fit=asdict(fit), bins=binned_curve(cols["mag"], cols["recovered"], lo, hi, bin_width_mag), injections=table,
    )


def _seeing_from_header(image: Image, settings: Settings) -> float | None:
    """The seeing FWHM (pixels) the image's header records (:func:`skysift.core.psf.header_seeing`)."""
    seeing = header_seeing(image.header, plausible_pixel_scale(image.wcs, settings))
    return seeing.fwhm_px if seeing else None


def binned_curve(mag: np.ndarray, recovered: np.ndarray, lo: float, hi: float, width: float) -> list[dict]:
    """Recovered fraction in magnitude bins of ``width`` (mag) from ``lo`` to ``hi``."""
    edges = np.arange(lo, hi + width * 0.5, width)
    out = []
    for a, b in pairwise(edges):
        inside = (mag >= a) & (mag < b)
        n = int(inside.sum())
        out.append({"mag_lo": float(a), "mag_hi": float(b), "n_injected": n, "n_recovered": int(recovered[inside].sum()),
                    "completeness": float(recovered[inside].mean()) if n else None})
    return out


def record_completeness(home: str | os.PathLike[str], result: CompletenessResult) -> dict[str, str]:
    """Write the limits into the image's ``images`` row, the injections table and the curve JSON.

    Raises
    ------
    CompletenessError
        The image has no ``images`` row under ``home`` (run ``skysift run`` on it first).
    """
    store = LocalTables(home)
    found = store.image(result.image_id)
    if found is None:
        raise CompletenessError(f"no images row for {result.image_id} under {home}: run `skysift run` on it first",
                                uri=result.uri)
    row = found.replace(completeness_mag50=result.mag50, completeness_mag90=result.mag90)
    pointers = {"images": store.write_rows("images", row, row.to_table())}
    if result.injections is not None:
        pointers["injections"] = write_rows(home, "injections", row, result.injections)
    folder = Path(home) / "completeness"
    folder.mkdir(parents=True, exist_ok=True)
    curve = folder / f"{result.image_id}.json"
    curve.write_text(json.dumps(result.to_json(), indent=2))
    pointers["curve"] = str(curve)
    return pointers
