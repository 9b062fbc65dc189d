"""Alert rules, cutouts, and the local alert log.

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
import io
import json
import logging
import os
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.nddata import Cutout2D

from skysift.alerts.forced import forced_snr
from skysift.catalog.ports import AlertPublisher, CatalogStore
from skysift.catalog.schema import ALERTS_SCHEMA
from skysift.core import flags as F
from skysift.core.astrometry import WcsStatus, sky_to_pixel
from skysift.errors import SkysiftError
from skysift.io.fits import Sections, build_wcs
from skysift.settings import AlertSettings, BackgroundSettings

log = logging.getLogger(__name__)

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
    return (sources["flags"].to_numpy() & F.CLEAN_MASK) == 0


@lru_cache(maxsize=4096)
def _wcs_of(wcs_header: str):
    """An image's WCS from its stored header text; cached, as every later image asks again."""
    return build_wcs(fits.Header.fromstring(wcs_header, sep="\n"))


def _earlier_wcs(row: dict):
    """An earlier image's WCS, or None when it stored none usable (it then covers nothing)."""
    return _wcs_of(row["wcs_header"]) if row.get("wcs_header") else None


def _covered_by_earlier(ra: np.ndarray, dec: np.ndarray, earlier: list[dict]) -> np.ndarray:
    """Which positions fall inside at least one earlier image (pixel bounds of its WCS)."""
    covered = np.zeros(len(ra), dtype=bool)
    for row in earlier:
        if covered.all():
            break
        wcs = _earlier_wcs(row)
        if wcs is None:
            continue
        x, y = sky_to_pixel(wcs, ra, dec)
        margin = 5.0
        covered |= (x >= margin) & (y >= margin) & (x <= row["nx"] - 1 - margin) & (y <= row["ny"] - 1 - margin)
    return covered


def _farther_than(here: SkyCoord, history: pa.Table, radius_arcsec: float) -> np.ndarray:
    """True where no position of ``history`` lies within ``radius_arcsec``."""
    if history.num_rows == 0:
        return np.ones(len(here), dtype=bool)
    before = SkyCoord(history["ra"].to_numpy() * u.deg, history["dec"].to_numpy() * u.deg)
    _, separation, _ = here.match_to_catalog_sky(before)
    return separation.arcsec > radius_arcsec


def new_sources(image_row: dict, sources: pa.Table, store: CatalogStore, rules: AlertSettings,
                background: BackgroundSettings) -> dict[int, str]:
    """Row index -> reason for sources with no counterpart in earlier images of this sky.

    A source without a sky position (its image's WCS is not trusted) is never new: there
    is nothing to compare it with.
    """
    if (rules.new_source_radius_arcsec is None or sources.num_rows == 0 or image_row.get("obs_time") is None
            or image_row.get("center_ra") is None):
        return {}
    snr = sources["snr"].to_numpy(zero_copy_only=False)
    placed = np.isfinite(sources["ra"].to_numpy()) & np.isfinite(sources["dec"].to_numpy())  # null -> NaN
    candidates = np.flatnonzero(_clean(sources) & placed & (snr >= rules.new_source_min_snr))
    if candidates.size == 0:
        return {}
    radius = float(image_row["radius_deg"])
    earlier = store.earlier_images(image_row["center_ra"], image_row["center_dec"], radius, image_row["obs_time"])
    if not earlier:
        return {}
    ra = sources["ra"].to_numpy()[candidates]
    dec = sources["dec"].to_numpy()[candidates]
    covered = _covered_by_earlier(ra, dec, earlier)
    mags = sources["mag_ab"].to_numpy(zero_copy_only=False)[candidates]
    limits = [r["limit_mag_5sigma"] for r in earlier if r.get("limit_mag_5sigma") is not None and np.isfinite(r["limit_mag_5sigma"])]
    if limits and np.isfinite(mags).any():
        deep_enough = ~(mags > max(limits) - NEW_SOURCE_DEPTH_MARGIN_MAG)
        covered &= deep_enough
    if not covered.any():
        return {}
    history = store.earlier_sources(image_row["center_ra"], image_row["center_dec"], radius + 0.01, image_row["obs_time"])
    here = SkyCoord(ra * u.deg, dec * u.deg)
    radius_arcsec = rules.new_source_radius_arcsec
    unmatched = _farther_than(here, history, radius_arcsec)
    # A blend deblended differently earlier puts its pieces up to a seeing disc away:
    # a merged earlier detection within BLEND_RADIUS_FACTOR radii is a counterpart too.
    merged = history.filter(pa.compute.not_equal(pa.compute.bit_wise_and(history["flags"], F.MERGED), 0))
    unmatched &= _farther_than(here, merged, BLEND_RADIUS_FACTOR * radius_arcsec)
    new = np.flatnonzero(covered & unmatched)
    if new.size == 0:
        return {}
    # Catalogs miss blended and faint sources: look at the earlier pixels themselves.
    radius_px = max(2.0, float(image_row.get("seeing_fwhm_px") or 3.0))
    quiet = np.ones(new.size, dtype=bool)
    looked = 0
    for row in earlier:
        if not quiet.any():
            break  # every candidate already showed flux in an image read before
        wcs = _earlier_wcs(row)
        if wcs is None:
            continue
        try:
            snr_before = forced_snr(row["uri"], row.get("hdu"), wcs, ra[new], dec[new], radius_px, background)
        except SkysiftError as exc:  # moved, deleted or damaged since it was measured
            log.warning("forced photometry skipped earlier image %s: %s", row["uri"], exc)
            continue
        looked += 1
        quiet &= ~(snr_before >= FORCED_SNR_PRESENT)
    return {
        int(candidates[k]): (f"nothing within {radius_arcsec:g}\" and no flux above "
                             f"{FORCED_SNR_PRESENT:g} sigma at this position in {looked} earlier image(s)")
        for k in new[quiet]
    }


def evaluate(image_row: dict, sources: pa.Table, store: CatalogStore, rules: AlertSettings,
             background: BackgroundSettings | None = None) -> list[dict]:
    """Apply every enabled rule to one image's sources; at most ``max_per_image`` alerts."""
    if sources is None or sources.num_rows == 0:
        return []
    fired: list[tuple[int, str, str]] = []
    clean = _clean(sources)
    snr = sources["snr"].to_numpy(zero_copy_only=False)
    flux = sources["flux"].to_numpy()
    if rules.high_snr is not None:
        fired += [(int(i), "high_snr", f"SNR {snr[i]:.0f} >= {rules.high_snr:g}") for i in np.flatnonzero(clean & (snr >= rules.high_snr))]
    if rules.high_flux is not None:
        fired += [(int(i), "high_flux", f"flux {flux[i]:.4g} counts >= {rules.high_flux:g}") for i in np.flatnonzero(clean & (flux >= rules.high_flux))]
    fired += [(i, "new_source", why) for i, why in new_sources(image_row, sources, store, rules, background or BackgroundSettings()).items()]
    fired.sort(key=lambda item: -snr[item[0]])
    fired = fired[: rules.max_per_image]
    created = datetime.now(UTC)
    picked = sources.select(ALERT_SOURCE_COLUMNS).take(np.array([i for i, _, _ in fired], dtype=np.int64)).to_pylist()
    alerts = []
    for source, (_, rule, why) in zip(picked, fired, strict=True):
        alerts.append({
            "alert_id": alert_id(image_row["image_id"], source["source_id"], rule),
            "rule": rule,
            "image_id": image_row["image_id"],
            **source,
            "obs_time": image_row.get("obs_time"),
            "image_uri": image_row.get("uri"),
            "cutout_uri": None,
            "detail": why,
            "created_at": created,
            "survey": image_row.get("survey"), "band": image_row.get("band"), "obs_night": image_row.get("obs_night"),
        })
    return alerts


def cutout_fits(image_uri: str, hdu: int | None, alerts: list[dict], size_px: int, *,
                with_wcs: bool = True) -> list[bytes]:
    """Small FITS cutouts around each alert's source, each read as a section; with the
    image's WCS unless ``with_wcs`` is False (a WCS that is not trusted is not passed on)."""
    if not alerts:
        return []
    out = []
    with Sections(image_uri, hdu) as image:
        wcs = build_wcs(image.header) if with_wcs else None
        ny, nx = image.shape
        reach = size_px // 2 + 2  # every pixel Cutout2D may take, whatever the rounding
        for alert in alerts:
            x0, y0 = max(0, int(alert["x"]) - reach), max(0, int(alert["y"]) - reach)
            x1, y1 = min(nx, int(alert["x"]) + reach + 1), min(ny, int(alert["y"]) + reach + 1)
            data, _ = image.read(y0, y1, x0, x1)
            cut = Cutout2D(data, (alert["x"] - x0, alert["y"] - y0), size_px, wcs=wcs[y0:y1, x0:x1] if wcs else None,
                           mode="partial", fill_value=np.nan)
            header = cut.wcs.to_header(relax=True) if cut.wcs is not None else fits.Header()
            header["ALERTID"] = alert["alert_id"]
            header["RULE"] = alert["rule"]
            buffer = io.BytesIO()
            fits.PrimaryHDU(cut.data.astype(np.float32), header).writeto(buffer)
            out.append(buffer.getvalue())
    return out


def prepare_alerts(image_row: dict, sources: pa.Table, store: CatalogStore, rules: AlertSettings,
                   background: BackgroundSettings | None = None) -> list[dict]:
    """The alerts one image raises, with their FITS cutouts stored; nothing is sent.

    Reads the tables and earlier pixels; its one effect, the cutouts, is named by
    alert_id, so storing one again is harmless. Images can therefore be prepared in
    parallel once every image's rows are written, and their alerts then delivered in
    time order (:func:`deliver_alerts`).
    """
    alerts = evaluate(image_row, sources, store, rules, background)
    cutouts = cutout_fits(image_row["uri"], image_row.get("hdu"), alerts, rules.cutout_size_px,
                          with_wcs=image_row.get("wcs_status") != WcsStatus.INVALID)
    return [{**alert, "cutout_uri": store.put_cutout(alert["alert_id"], data)} for alert, data in zip(alerts, cutouts, strict=True)]


def deliver_alerts(image_row: dict, alerts: list[dict], store: CatalogStore, publisher: AlertPublisher) -> list[dict]:
    """Store the image's ``alerts`` rows, and publish each alert once per alert_id."""
    store.write_alerts(image_row, pa.Table.from_pylist([{k: a[k] for k in ALERTS_SCHEMA.names} for a in alerts], schema=ALERTS_SCHEMA))
    publisher.publish(alerts)
    return alerts


def raise_alerts(image_row: dict, sources: pa.Table, store: CatalogStore, publisher: AlertPublisher,
                 rules: AlertSettings, background: BackgroundSettings | None = None) -> list[dict]:
    """Evaluate the rules, store cutouts and the ``alerts`` rows, publish once per alert_id."""
    return deliver_alerts(image_row, prepare_alerts(image_row, sources, store, rules, background), store, publisher)


def alert_message(alert: dict) -> dict:
    """The JSON body subscribers receive (times as ISO strings)."""
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in alert.items()}


class LogPublisher:
    """The local :class:`~skysift.catalog.ports.AlertPublisher`: an append-only JSON-lines log.

    Sending an alert is appending its line to ``alerts.jsonl``; a marker file per
    alert_id under ``alerts-sent/`` then records that it was sent, so a re-run sends
    nothing again. The line is written (and flushed to disk) before the marker: a crash
    between the two only logs the alert again on the next attempt, and :meth:`read`
    shows each alert_id once; a crash can never mark an alert sent that was not logged.
    One writer at a time: runs hold the home's lock (:mod:`skysift.catalog.homelock`).
    """

    def __init__(self, home: str | os.PathLike[str]) -> None:
        self.home = Path(home)
        self.log_path = self.home / "alerts.jsonl"
        self.sent_dir = self.home / "alerts-sent"

    def was_sent(self, alert_id: str) -> bool:
        return (self.sent_dir / alert_id).exists()

    def publish(self, alerts: list[dict]) -> list[str]:
        unsent = list({a["alert_id"]: a for a in alerts if not self.was_sent(a["alert_id"])}.values())
        if not unsent:
            return []
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a", encoding="utf-8") as log_file:
            if not self._ends_with_newline():
                log_file.write("\n")  # a line cut short by a crash stays a line of its own
            log_file.writelines(json.dumps(alert_message(alert)) + "\n" for alert in unsent)
            log_file.flush()
            os.fsync(log_file.fileno())
        self.sent_dir.mkdir(parents=True, exist_ok=True)
        for alert in unsent:
            self._mark_sent(alert["alert_id"])
        return [alert["alert_id"] for alert in unsent]

    def _mark_sent(self, alert_id: str) -> None:
        (self.sent_dir / alert_id).touch()

    def _ends_with_newline(self) -> bool:
        try:
            with open(self.log_path, "rb") as log_file:
                log_file.seek(-1, os.SEEK_END)
                return log_file.read(1) == b"\n"
        except (FileNotFoundError, OSError):  # no log yet, or an empty one (cannot seek before its start)
            return True

    def read(self) -> list[dict]:
        """Every alert sent, once per alert_id (as first logged), newest first."""
        if not self.log_path.exists():
            return []
        seen: set[str] = set()
        alerts = []
        for number, line in enumerate(self.log_path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                alert = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s: line %d is not a whole alert (a write cut short by a crash?); skipped",
                            self.log_path, number)
                continue
            if alert.get("alert_id") not in seen:
                seen.add(alert.get("alert_id"))
                alerts.append(alert)
        return alerts[::-1]
