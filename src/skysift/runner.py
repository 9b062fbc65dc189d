"""Local survey runs: many images in parallel processes, then alerts in time order.

Phase 1 measures and writes every image in a process pool (SEP holds the GIL, so
parallelism is processes). Phase 2 raises alerts image by image in order of
observation time, so the 'new source' rule always compares with every earlier
image of the run, whatever order the workers finished in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime

from .alerts import LogPublisher, raise_alerts
from .pipeline import ImageSummary, process_image, record, summarize
from .settings import Settings
from .tables import LocalTables

log = logging.getLogger(__name__)

ProgressCallback = Callable[[ImageSummary], None]


@dataclass
class RunReport:
    summaries: list[ImageSummary] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for s in self.summaries if s.status == status)

    @property
    def n_sources(self) -> int:
        return sum(s.n_sources for s in self.summaries)

    @property
    def n_alerts(self) -> int:
        return sum(s.n_alerts for s in self.summaries)


def _measure_and_write(uri: str, settings: Settings, hdu: int | str | None) -> tuple[ImageSummary, dict, datetime | None]:
    result = process_image(uri, settings, hdu=hdu)
    pointers = record(result, LocalTables(settings.home))
    row = result.image_row
    return summarize(result, pointers), row, row.get("obs_time")


def run_local(uris: Iterable[str], settings: Settings, *, workers: int = 1, hdu: int | str | None = None,
              on_image: ProgressCallback | None = None) -> RunReport:
    """Process every image, write the tables under ``settings.home`` and raise alerts."""
    t0 = time.perf_counter()
    uris = list(uris)
    done: list[tuple[ImageSummary, dict, datetime | None]] = []
    if workers <= 1:
        for uri in uris:
            done.append(_measure_and_write(uri, settings, hdu))
            if on_image:
                on_image(done[-1][0])
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_measure_and_write, uri, settings, hdu) for uri in uris]
            for future in as_completed(futures):
                done.append(future.result())
                if on_image:
                    on_image(done[-1][0])
    store, publisher = LocalTables(settings.home), LogPublisher(settings.home)
    ordered = sorted(done, key=lambda item: (item[2] is None, item[2] or datetime.min, item[0].uri or ""))
    for summary, row, _ in ordered:
        if summary.status != "ok":
            continue
        sources = store.read_sources(row)
        summary.n_alerts = len(raise_alerts(row, sources, store, publisher, settings.alerts, settings.background))
    order = {uri: i for i, uri in enumerate(uris)}
    summaries = sorted((item[0] for item in done), key=lambda s: order.get(s.uri, len(order)))
    return RunReport(summaries=summaries, seconds=time.perf_counter() - t0)
