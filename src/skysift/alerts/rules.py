"""Alert rules: which sources of a new image are worth telling someone about.

Rules (each configurable in :class:`~skysift.settings.AlertSettings`, off when None):

* ``high_snr``: a clean source with SNR above the threshold;
* ``high_flux``: a clean source brighter (counts) than the threshold;
* ``new_source``: a clean, significant source inside the footprint of at least one
  earlier image of the same sky, with no earlier detection within the radius: a
  transient candidate. When both images are calibrated, the source must also be
  0.75 mag brighter than the earlier image's 5-sigma limit, so that it would
  have been seen; and forced photometry on the earlier images must find no flux
  above 3 sigma at its position (catalogs miss blended and faint sources).

Each alert has ``alert_id = hash(image_id, source_id, rule)``. Publishers send an
alert at most once per id, so a re-run or a duplicate event sends nothing new.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Generic, TypeVar

import numpy as np
import pyarrow as pa
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits

from skysift.alerts.forced import forced_snr, sky_busy
from skysift.catalog.arrow import numpy_column, numpy_values
from skysift.catalog.ports import CatalogStore
from skysift.catalog.records import ImageRecord
from skysift.core import flags as F
from skysift.core.astrometry import sky_to_pixel
from skysift.errors import SkysiftError
from skysift.io.fits import build_wcs
from skysift.settings import AlertSettings, BackgroundSettings

__all__ = [
    "ALERT_SOURCE_COLUMNS",
    "BLEND_RADIUS_FACTOR",
    "FORCED_SNR_PRESENT",
    "NEW_SOURCE_DEPTH_MARGIN_MAG",
    "alert_id",
    "evaluate",
    "new_sources",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Detections this close to a brighter earlier image's limit are not called new.
NEW_SOURCE_DEPTH_MARGIN_MAG = 0.75
BLEND_RADIUS_FACTOR = 3.0
#: Forced-photometry SNR in an earlier image above which the source was already there.
FORCED_SNR_PRESENT = 3.0
#: The ``sources`` columns an alert carries.
ALERT_SOURCE_COLUMNS = ["source_id", "ra", "dec", "x", "y", "flux", "snr", "mag_ab", "star_score"]


def alert_id(image_id: str, source_id: str, rule: str) -> str:
    return hashlib.blake2b(f"{image_id}|{source_id}|{rule}".encode(), digest_size=10).hexdigest()


def _clean(sources: pa.Table) -> np.ndarray:
    return (numpy_values(sources["flags"]) & F.CLEAN_MASK) == 0


@lru_cache(maxsize=4096)
def _wcs_of(wcs_header: str):
    """An image's WCS from its stored header text; cached, as every later image asks again."""
    return build_wcs(fits.Header.fromstring(wcs_header, sep="\n"))


def _earlier_wcs(image: ImageRecord):
    """An earlier image's WCS, or None when it stored none usable (it then covers nothing)."""
    return _wcs_of(image.wcs_header) if image.wcs_header else None


def _covered_by_earlier(ra: np.ndarray, dec: np.ndarray, earlier: list[ImageRecord]) -> np.ndarray:
    """Which positions fall inside at least one earlier image (pixel bounds of its WCS)."""
    covered = np.zeros(len(ra), dtype=bool)
    for image in earlier:
        if covered.all():
            break
        wcs = _earlier_wcs(image)
        if wcs is None:
            continue
        x, y = sky_to_pixel(wcs, ra, dec)
        margin = 5.0
        covered |= (x >= margin) & (y >= margin) & (x <= image.nx - 1 - margin) & (y <= image.ny - 1 - margin)
    return covered


def _farther_than(here: SkyCoord, history: pa.Table, radius_arcsec: float) -> np.ndarray:
    """True where no position of ``history`` lies within ``radius_arcsec``."""
    if history.num_rows == 0:
        return np.ones(len(here), dtype=bool)
    before = SkyCoord(numpy_values(history["ra"]) * u.deg, numpy_values(history["dec"]) * u.deg)
    _, separation, _ = here.match_to_catalog_sky(before)
    return separation.arcsec > radius_arcsec


def new_sources(image: ImageRecord, sources: pa.Table, store: CatalogStore, rules: AlertSettings,
                background: BackgroundSettings) -> dict[int, str]:
    """Row index -> reason for sources with no counterpart in earlier images of this sky.

    A source without a sky position (its image's WCS is not trusted) is never new: there
    is nothing to compare it with.
    """
    if (rules.new_source_radius_arcsec is None or sources.num_rows == 0 or image.obs_time is None
            or image.center_ra is None):
        return {}
    snr, all_ra, all_dec = (numpy_values(sources[name]) for name in ("snr", "ra", "dec"))
    placed = np.isfinite(all_ra) & np.isfinite(all_dec)  # null -> NaN
    candidates = np.flatnonzero(_clean(sources) & placed & (snr >= rules.new_source_min_snr))
    if candidates.size == 0:
        return {}
    radius = float(image.radius_deg)
    earlier = store.earlier_images(image.center_ra, image.center_dec, radius, image.obs_time)
    if not earlier:
        return {}
    ra, dec = all_ra[candidates], all_dec[candidates]
    covered = _covered_by_earlier(ra, dec, earlier)
    mags = numpy_values(sources["mag_ab"])[candidates]
    limits = [r.limit_mag_5sigma for r in earlier if r.limit_mag_5sigma is not None and np.isfinite(r.limit_mag_5sigma)]
    if limits and np.isfinite(mags).any():
        deep_enough = ~(mags > max(limits) - NEW_SOURCE_DEPTH_MARGIN_MAG)
        covered &= deep_enough
    if not covered.any():
        return {}
    history = store.earlier_sources(image.center_ra, image.center_dec, radius + 0.01, image.obs_time)
    here = SkyCoord(ra * u.deg, dec * u.deg)
    radius_arcsec = rules.new_source_radius_arcsec
    unmatched = _farther_than(here, history, radius_arcsec)
    # A blend deblended differently earlier puts its pieces up to a seeing disc away:
    # a merged earlier detection within BLEND_RADIUS_FACTOR radii is a counterpart too.
    merged = history.filter(numpy_column((numpy_values(history["flags"], null=0) & F.MERGED) != 0, pa.bool_()))
    unmatched &= _farther_than(here, merged, BLEND_RADIUS_FACTOR * radius_arcsec)
    new = np.flatnonzero(covered & unmatched)
    if new.size == 0:
        return {}
    # Catalogs miss blended and faint sources: look at the earlier pixels themselves.
    radius_px = max(2.0, float(image.seeing_fwhm_px or 3.0))
    quiet = np.ones(new.size, dtype=bool)
    looked = 0
    readable = [(before, wcs) for before in earlier if (wcs := _earlier_wcs(before)) is not None]
    snrs = _AheadWhileBusy(
        [lambda b=before, w=wcs: forced_snr(b.uri, b.hdu, w, ra[new], dec[new], radius_px, background)
         for before, wcs in readable],
        [lambda b=before: sky_busy(b.uri, b.hdu, background) for before, _ in readable])
    for k, (before, _) in enumerate(readable):
        if not quiet.any():
            break  # every candidate already showed flux in an image read before
        try:
            snr_before = snrs.result(k)
        except SkysiftError as exc:  # moved, deleted or damaged since it was measured
            log.warning("forced photometry skipped earlier image %s: %s", before.uri, exc)
            continue
        looked += 1
        quiet &= ~(snr_before >= FORCED_SNR_PRESENT)
    return {
        int(candidates[k]): (f"nothing within {radius_arcsec:g}\" and no flux above "
                             f"{FORCED_SNR_PRESENT:g} sigma at this position in {looked} earlier image(s)")
        for k in new[quiet]
    }


class _AheadWhileBusy(Generic[T]):
    """Results of ``measures`` (calls without arguments), asked for in order, each made once;
    while the one asked for is ``busy`` (another process of the alert phase is computing the
    sky it reads), the next ones not busy are made first instead of waiting for it.

    The 'new source' rule reads the earlier images in time order and stops when every
    candidate showed flux; the workers of a survey's alert phase, preparing neighbouring
    images, reach the same newest earlier image together, and one waited for the other to
    compute its sky. The results, and which are used, are those of the order asked; a result
    made ahead and never asked for only filled the sky cache the later images read.
    """

    def __init__(self, measures: list[Callable[[], T]], busy: list[Callable[[], bool]]) -> None:
        self.measures, self.busy = measures, busy
        self.made: dict[int, tuple[T | None, SkysiftError | None]] = {}

    def _make(self, k: int) -> None:
        try:
            self.made[k] = (self.measures[k](), None)
        except SkysiftError as exc:
            self.made[k] = (None, exc)

    def result(self, k: int) -> T:
        """The result of ``measures[k]`` (its SkysiftError raised)."""
        ahead = k + 1
        while k not in self.made and self.busy[k]():
            while ahead < len(self.measures) and (ahead in self.made or self.busy[ahead]()):
                ahead += 1
            if ahead == len(self.measures):
                break  # nothing else to do: wait for it
            self._make(ahead)
        if k not in self.made:
            self._make(k)
        value, error = self.made.pop(k)
        if error is not None:
            raise error
        return value


def evaluate(image: ImageRecord, sources: pa.Table, store: CatalogStore, rules: AlertSettings,
             background: BackgroundSettings | None = None) -> list[dict]:
    """Apply every enabled rule to one image's sources; at most ``max_per_image`` alerts."""
    if sources is None or sources.num_rows == 0:
        return []
    fired: list[tuple[int, str, str]] = []
    clean = _clean(sources)
    snr = numpy_values(sources["snr"])
    flux = numpy_values(sources["flux"])
    if rules.high_snr is not None:
        fired += [(int(i), "high_snr", f"SNR {snr[i]:.0f} >= {rules.high_snr:g}") for i in np.flatnonzero(clean & (snr >= rules.high_snr))]
    if rules.high_flux is not None:
        fired += [(int(i), "high_flux", f"flux {flux[i]:.4g} counts >= {rules.high_flux:g}") for i in np.flatnonzero(clean & (flux >= rules.high_flux))]
    fired += [(i, "new_source", why) for i, why in new_sources(image, sources, store, rules, background or BackgroundSettings()).items()]
    fired.sort(key=lambda item: -snr[item[0]])
    fired = fired[: rules.max_per_image]
    created = datetime.now(UTC)
    picked = sources.select(ALERT_SOURCE_COLUMNS).take(numpy_column([i for i, _, _ in fired], pa.int64())).to_pylist()
    alerts = []
    for source, (_, rule, why) in zip(picked, fired, strict=True):
        alerts.append({
            "alert_id": alert_id(image.image_id, source["source_id"], rule),
            "rule": rule,
            "image_id": image.image_id,
            **source,
            "obs_time": image.obs_time,
            "image_uri": image.uri,
            "cutout_uri": None,
            "detail": why,
            "created_at": created,
            **image.partition,
        })
    return alerts
