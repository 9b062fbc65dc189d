"""Earlier observations of a patch of sky: what the 'new source' rule compares with.

Both catalog stores (local Parquet files, S3 + Glue) answer the same two questions,
which earlier images reach a cone and which of their detections lie in it, with the
filters here. They differ only in how they find candidate ``images`` rows (every
local file, kept in memory; the S3 footprint index) and how they read a file.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
import pyarrow as pa
from cachetools import LRUCache

__all__ = [
    "HISTORY_SCHEMA",
    "FileCache",
    "angular_distance_deg",
    "images_reaching",
    "sources_in_cone",
]

from skysift.catalog.arrow import empty_table, numpy_column, numpy_values
from skysift.catalog.records import ImageRecord, ImageStatus

#: The columns of earlier detections the rule needs.
HISTORY_SCHEMA = pa.schema([("ra", pa.float64()), ("dec", pa.float64()), ("image_id", pa.string()), ("flags", pa.int32())])


def angular_distance_deg(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Great-circle distance in degrees between positions given in degrees (broadcasts)."""
    # imported here: astropy.coordinates takes ~0.1 s to load, which `skysift query` never needs
    from astropy.coordinates import angular_separation

    return np.degrees(angular_separation(*(np.radians(np.asarray(v, dtype=float)) for v in (ra1, dec1, ra2, dec2))))


def images_reaching(images: Iterable[ImageRecord], center_ra: float, center_dec: float, radius_deg: float,
                    before: datetime) -> list[ImageRecord]:
    """Status-ok ``images`` rows observed before ``before`` whose disc comes within
    ``radius_deg`` of the centre, oldest first."""
    rows = [r for r in images if r.status is ImageStatus.OK and r.obs_time is not None and r.obs_time < before
            and r.center_ra is not None]  # an image without a trusted WCS reaches no sky
    if not rows:
        return []
    distance = angular_distance_deg([r.center_ra for r in rows], [r.center_dec for r in rows], center_ra, center_dec)
    reach = np.array([radius_deg + (r.radius_deg or 0.0) for r in rows])
    picked = [r for r, d, limit in zip(rows, distance, reach, strict=True) if d <= limit]
    return sorted(picked, key=lambda r: r.obs_time)


def sources_in_cone(tables: Iterable[pa.Table], center_ra: float, center_dec: float, radius_deg: float) -> pa.Table:
    """The rows of ``tables`` (at least the :data:`HISTORY_SCHEMA` columns) within the cone."""
    parts = []
    for table in tables:
        table = table.select(HISTORY_SCHEMA.names).cast(HISTORY_SCHEMA)
        if table.num_rows == 0:
            continue
        distance = angular_distance_deg(numpy_values(table["ra"]), numpy_values(table["dec"]), center_ra, center_dec)
        parts.append(table.filter(numpy_column(distance <= radius_deg, pa.bool_())))
    return pa.concat_tables(parts) if parts else empty_table(HISTORY_SCHEMA)


T = TypeVar("T")


class FileCache(Generic[T]):
    """What ``load`` made of a file, kept while the file is unchanged.

    A file counts as unchanged while its inode, size and modification time are:
    skysift replaces files atomically (new inode), so a rewritten file is read again.
    With ``max_bytes`` (and ``size`` to measure an entry), the least recently used
    entries are dropped beyond that total.
    """

    def __init__(self, load: Callable[[Path], T], *, max_bytes: int | None = None,
                 size: Callable[[T], int] | None = None) -> None:
        self._load = load
        measure = size or (lambda _: 0)
        budget = math.inf if max_bytes is None else max_bytes
        # An entry larger than the whole budget counts as the budget: it is kept alone until another
        # needs room (LRUCache refuses a value larger than maxsize, and a compacted partition's file
        # should be read once for all its images, not once per image).
        self._entries: LRUCache[Path, tuple[tuple[int, int, int], T]] = LRUCache(
            maxsize=budget, getsizeof=lambda entry: min(measure(entry[1]), budget))

    def get(self, path: Path) -> T:
        """The loaded content of ``path`` (FileNotFoundError if it is gone)."""
        stat = path.stat()
        version = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        entry = self._entries.get(path)  # the most recently used now
        if entry is not None and entry[0] == version:
            return entry[1]
        value = self._load(path)
        self._entries.pop(path, None)
        self._entries[path] = (version, value)
        return value

    def forget_missing(self, present: set[Path]) -> None:
        """Drop the entries of files no longer listed."""
        for path in [p for p in self._entries if p not in present]:
            del self._entries[path]
