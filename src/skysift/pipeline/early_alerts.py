"""Which images' alerts a survey prepares while it still measures, and which of those stand.

An image's alerts rest on the images of its sky observed earlier (:mod:`skysift.pipeline.survey`
delivers them in order of observation time). Preparing them needs every earlier image's rows
written, not every image's: once the images still being measured are all observed after an
image, its alerts can be prepared in the measuring pool next to them. A survey of visits to
one field then has its alert work done while the pool measures the later visits, not in a
phase of its own after it (issue 15: that phase was 29-33% of a 20-visit run).

The images still being measured are not measured yet, so when they were observed is the
time their headers give (:func:`~skysift.core.metadata.observation_time`, as the measuring
reads it): one without a time there holds back every image after it. That guess only
decides when to start; whether the alerts stand is decided once everything is measured, from
the measured times: alerts prepared while an image observed earlier (or at an unknown time)
was still being measured are prepared again in the alert phase, as they were before this
module, so a header that misleads costs time, never a different alert. (The survey also
compares the earlier images a preparation saw when it started with those the tables hold at the
end: an image measured again may have had an earlier time in its old row.)
"""

from __future__ import annotations

import heapq
import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from skysift.catalog.records import ImageRecord, ImageStatus

__all__ = ["EarlyAlerts", "posix_seconds"]

log = logging.getLogger(__name__)


def posix_seconds(value: Any) -> float | None:
    """A time (datetime, pandas Timestamp; naive means UTC) as POSIX seconds, or None."""
    if not isinstance(value, datetime):
        return None
    try:
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    except ValueError:  # pandas' NaT
        return None


@dataclass
class _Prepared:
    """An image's alerts prepared while measuring: when the preparation started, and its outcome."""

    image_id: str
    seconds: float  # the image's measured observation time
    started_after: int  # how many images of the run were measured when its preparation started
    outcome: Any = None
    error: BaseException | None = None


@dataclass
class EarlyAlerts:
    """Follows a pool's measuring of a run's images (indices ``0..n-1`` of ``header_seconds``,
    the observation times their headers give) and says whose alerts to prepare now.

    :meth:`measured` takes each image's row as it is written and returns the images whose
    alerts may now be prepared (every image still being measured is observed after them);
    :meth:`prepared` takes each outcome, and :meth:`standing` gives, once all is measured,
    the alerts that rest on the same earlier images as they would after it.
    """

    header_seconds: list[float | None]
    #: (header time, index) of every image, -inf for an unknown time; its measured ones are
    #: dropped from the top as they come up (each step is a heap operation, not a pass over the run)
    _unmeasured: list[tuple[float, int]] = field(init=False)
    _measured: set[int] = field(init=False, default_factory=set)
    _measured_seconds: list[float | None] = field(init=False, default_factory=list)  # in the order measured
    _waiting: list[tuple[float, int, ImageRecord]] = field(init=False, default_factory=list)  # heap, oldest first
    _started: list[_Prepared] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self._unmeasured = [(-math.inf if t is None else t, i) for i, t in enumerate(self.header_seconds)]
        heapq.heapify(self._unmeasured)

    def measured(self, index: int, row: ImageRecord, *, preparable: bool = True) -> list[ImageRecord]:
        """Image ``index`` is measured (``row``, ok or failed, is written): the images whose alerts may
        be prepared from now on, oldest first; the caller starts them in this order and hands each
        outcome to :meth:`prepared` in the same order. ``preparable`` False: this image's alerts are
        left to the alert phase (it only holds others back until now)."""
        self._measured.add(index)
        while self._unmeasured and self._unmeasured[0][1] in self._measured:
            heapq.heappop(self._unmeasured)
        # a failed row raises nothing, but one measured again replaces the image's earlier ok row
        when = posix_seconds(row.obs_time)
        self._measured_seconds.append(when)
        if preparable and row.status is ImageStatus.OK and when is not None:
            heapq.heappush(self._waiting, (when, index, row))
        horizon = self._unmeasured[0][0] if self._unmeasured else math.inf  # the earliest still being measured
        ready = []
        while self._waiting and self._waiting[0][0] < horizon:
            seconds, _, image = heapq.heappop(self._waiting)
            self._started.append(_Prepared(image.image_id, seconds, len(self._measured_seconds)))
            ready.append(image)
        return ready

    def prepared(self, started: int, outcome: Any, error: BaseException | None) -> None:
        """The outcome of the ``started``-th preparation (0 for the first image :meth:`measured` returned)."""
        self._started[started].outcome, self._started[started].error = outcome, error

    def standing(self) -> dict[str, Any]:
        """Once every image is measured: image_id -> the outcome of its preparation, for the images
        whose preparation started when every image measured after that moment is observed later
        than it (so no earlier image's rows changed while it read them) and did not fail."""
        later = [math.inf] * (len(self._measured_seconds) + 1)  # later[s]: earliest time measured after s
        for s in range(len(self._measured_seconds) - 1, -1, -1):
            seconds = self._measured_seconds[s]
            later[s] = min(later[s + 1], -math.inf if seconds is None else seconds)
        standing = {p.image_id: p.outcome for p in self._started
                    if p.error is None and p.outcome is not None and p.seconds < later[p.started_after]}
        ahead = sum(p.started_after < len(self._measured_seconds) for p in self._started)
        log.debug("alerts of %d image(s) prepared while measuring (%d started before the last image was measured); "
                  "%d prepared again after it", len(standing), ahead, len(self._started) - len(standing))
        return standing

