"""The local alert publisher: an append-only JSON-lines log with one marker per alert sent."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from skysift.alerts.delivery import alert_message

__all__ = ["LogPublisher"]

log = logging.getLogger(__name__)


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
