"""An image's alerts: prepared (rules + cut-outs + packets, in parallel), then delivered in time order.

Preparing only reads tables and pixels and stores cut-outs and packets
(:mod:`~skysift.alerts.packets`) named by alert_id; delivering writes the ``alerts`` rows
and publishes each alert once per alert_id.
"""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa

from skysift.alerts.cutouts import cutout_fits
from skysift.alerts.packets import attach_packets
from skysift.alerts.rules import evaluate
from skysift.catalog.arrow import table_from_rows
from skysift.catalog.ports import AlertPublisher, CatalogStore, HistoryMemo
from skysift.catalog.records import ImageRecord, WcsStatus
from skysift.catalog.schema import ALERTS_SCHEMA
from skysift.settings import AlertSettings, BackgroundSettings, ObjectSettings

__all__ = ["alert_message", "deliver_alerts", "prepare_alerts", "raise_alerts"]


def prepare_alerts(image: ImageRecord, sources: pa.Table, store: CatalogStore, rules: AlertSettings,
                   background: BackgroundSettings | None = None, *, objects: ObjectSettings | None = None) -> list[dict]:
    """The alerts one image raises, with their FITS cutouts and packets stored; nothing is sent.

    Reads the tables and earlier pixels; its one effect, the cutouts and packets, is named
    by alert_id, so storing one again is harmless. Images can therefore be prepared in
    parallel once every image's rows are written, and their alerts then delivered in
    time order (:func:`deliver_alerts`). Each alert carries ``cutout_uri``, ``packet_uri``,
    ``object_id`` and ``sky_cell``; ``objects`` gives the packets' association radius.
    """
    store = HistoryMemo(store)  # the rules and the packets ask the same history questions
    alerts = evaluate(image, sources, store, rules, background)
    cutouts = cutout_fits(image.uri, image.hdu, alerts, rules.cutout_size_px,
                          with_wcs=image.wcs_status is not WcsStatus.INVALID)
    alerts = [{**alert, "cutout_uri": store.put_cutout(alert["alert_id"], data)} for alert, data in zip(alerts, cutouts, strict=True)]
    return attach_packets(image, alerts, sources, store, cutouts, cutout_size_px=rules.cutout_size_px,
                          radius_arcsec=(objects or ObjectSettings()).radius_arcsec)


def deliver_alerts(image: ImageRecord, alerts: list[dict], store: CatalogStore, publisher: AlertPublisher) -> list[dict]:
    """Store the image's ``alerts`` rows, and publish each alert once per alert_id."""
    store.write_alerts(image, table_from_rows(alerts, ALERTS_SCHEMA))
    publisher.publish(alerts)
    return alerts


def raise_alerts(image: ImageRecord, sources: pa.Table, store: CatalogStore, publisher: AlertPublisher,
                 rules: AlertSettings, background: BackgroundSettings | None = None, *,
                 objects: ObjectSettings | None = None) -> list[dict]:
    """Evaluate the rules, store cutouts, packets and the ``alerts`` rows, publish once per alert_id."""
    return deliver_alerts(image, prepare_alerts(image, sources, store, rules, background, objects=objects),
                          store, publisher)


def alert_message(alert: dict) -> dict:
    """The JSON body subscribers receive (times as ISO strings)."""
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in alert.items()}
