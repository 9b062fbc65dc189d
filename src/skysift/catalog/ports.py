"""The two seams between the pipeline and the outside world.

The local implementations are :class:`skysift.catalog.tables.LocalTables` and
:class:`skysift.alerts.log.LogPublisher`; the AWS ones live in :mod:`skysift.aws`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

import pyarrow as pa

from skysift.catalog.records import ImageRecord

__all__ = ["AlertPublisher", "CatalogStore", "HistoryMemo"]


class CatalogStore(Protocol):
    """Where catalog rows go, and where the history for the 'new source' rule comes from."""

    def write_image(self, image: ImageRecord, sources: pa.Table | None) -> dict[str, str]:
        """Write one image's ``images`` row and ``sources`` rows, replacing earlier rows of
        the same image_id (idempotent). Returns pointers to what was written."""

    def write_alerts(self, image: ImageRecord, alerts: pa.Table) -> str | None:
        """Write the ``alerts`` rows raised for one image, replacing earlier ones."""

    def read_sources(self, image: ImageRecord) -> pa.Table:
        """The ``sources`` rows of one image."""

    def earlier_images(self, center_ra: float, center_dec: float, radius_deg: float,
                       before: datetime) -> list[ImageRecord]:
        """``images`` rows (status ok) observed before ``before`` whose footprints come
        within ``radius_deg`` of the given centre."""

    def earlier_sources(self, center_ra: float, center_dec: float, radius_deg: float,
                        before: datetime) -> pa.Table:
        """ra/dec/image_id/flags of sources observed before ``before`` within the given cone."""

    def record_failure(self, image: ImageRecord, error: dict) -> str:
        """Keep a quarantine record of why an image failed; returns its URI. The raw
        file itself is never modified or deleted."""

    def put_cutout(self, name: str, fits_bytes: bytes) -> str:
        """Store a small FITS cutout; returns its URI."""

    def put_packet(self, name: str, avro_bytes: bytes) -> str:
        """Store an alert packet (an Avro container file, :mod:`skysift.alerts.packets`) beside
        the cutouts; returns its URI."""


class AlertPublisher(Protocol):
    """Sends alerts to subscribers, at most once per alert_id."""

    def publish(self, alerts: list[dict]) -> list[str]:
        """Publish the alerts not yet sent; returns the alert_ids actually sent now."""


class HistoryMemo:
    """A :class:`CatalogStore` that asks the store it wraps each history question once
    (:meth:`earlier_images`, :meth:`earlier_sources` with the same arguments) and passes
    every other call through.

    For the preparation of one image's alerts: the 'new source' rule and the packets ask the
    same questions (a listing of the images table, or queries to the cloud catalog, each), and
    nothing between them writes the images or sources tables. Each caller gets its own list.
    """

    def __init__(self, store: CatalogStore) -> None:
        self._store = store
        self._answers: dict[tuple, Any] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def _once(self, question: tuple, ask) -> Any:
        if question not in self._answers:
            self._answers[question] = ask()
        return self._answers[question]

    def earlier_images(self, center_ra: float, center_dec: float, radius_deg: float,
                       before: datetime) -> list[ImageRecord]:
        return list(self._once(("images", center_ra, center_dec, radius_deg, before),
                               lambda: self._store.earlier_images(center_ra, center_dec, radius_deg, before)))

    def earlier_sources(self, center_ra: float, center_dec: float, radius_deg: float,
                        before: datetime) -> pa.Table:
        return self._once(("sources", center_ra, center_dec, radius_deg, before),
                          lambda: self._store.earlier_sources(center_ra, center_dec, radius_deg, before))
