"""The local alert publisher: an append-only JSON-lines log, and markers of the alerts sent."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path

from skysift.alerts.delivery import alert_message

__all__ = ["LogPublisher"]

log = logging.getLogger(__name__)

#: Suffix of a marker listing the alert_ids one publish sent.
_BATCH_SUFFIX = ".sent"


class LogPublisher:
    """The local :class:`~skysift.catalog.ports.AlertPublisher`: an append-only JSON-lines log.

    Sending alerts is appending their lines to ``alerts.jsonl``; a marker file under
    ``alerts-sent/`` then records that they were sent, so a re-run sends nothing again:
    one ``{name}.sent`` file per publish, listing its alert_ids one a line (homes of earlier
    versions hold an empty marker named by each alert_id; both count). The lines are
    written (and flushed to disk) before the marker, and the marker is written whole
    (temporary file, then rename): a crash between the two only logs the alerts again on
    the next attempt, and :meth:`read` shows each alert_id once; a crash can never mark an
    alert sent that was not logged. One writer at a time: runs hold the home's lock
    (:mod:`skysift.catalog.homelock`), and a publisher reads the markers once, then adds
    its own (a file per alert cost a file creation per alert, a tenth of a survey's alert phase).
    """

    def __init__(self, home: str | os.PathLike[str]) -> None:
        self.home = Path(home)
        self.log_path = self.home / "alerts.jsonl"
        self.sent_dir = self.home / "alerts-sent"
        self._sent: set[str] | None = None

    def _sent_ids(self) -> set[str]:
        """Every alert_id marked sent (the markers read at the first call)."""
        if self._sent is None:
            sent: set[str] = set()
            with contextlib.suppress(FileNotFoundError):
                for entry in os.scandir(self.sent_dir):
                    if entry.name.endswith(_BATCH_SUFFIX):
                        with contextlib.suppress(FileNotFoundError):
                            sent.update(filter(None, Path(entry.path).read_text(encoding="utf-8").splitlines()))
                    elif not entry.name.startswith("."):  # a marker of one alert (not a temporary file)
                        sent.add(entry.name)
            self._sent = sent
        return self._sent

    def was_sent(self, alert_id: str) -> bool:
        return alert_id in self._sent_ids()

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
        ids = [alert["alert_id"] for alert in unsent]
        self.sent_dir.mkdir(parents=True, exist_ok=True)
        self._mark_sent(ids)
        self._sent_ids().update(ids)
        return ids

    def _mark_sent(self, alert_ids: list[str]) -> None:
        """One marker listing ``alert_ids``, written whole (named by a digest of them)."""
        text = "".join(f"{alert_id}\n" for alert_id in alert_ids)
        name = hashlib.blake2b(text.encode(), digest_size=12).hexdigest() + _BATCH_SUFFIX
        temporary = self.sent_dir / f".{name}.{os.getpid()}.tmp"
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, self.sent_dir / name)

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
