"""Earlier observations of a patch of sky: what the 'new source' rule compares with.

Both catalog stores (local Parquet files, S3 + Glue) answer the same two questions,
which earlier images reach a cone and which of their detections lie in it, with the
filters here. They differ only in how they find candidate ``images`` rows (every
local file, kept in memory; the S3 footprint index) and how they read a file.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
import pyarrow as pa

from skysift.catalog.records import ImageRecord, ImageStatus

#: The columns of earlier detections the rule needs.
HISTORY_SCHEMA = pa.schema([("ra", pa.float64()), ("dec", pa.float64()), ("image_id", pa.string()), ("flags", pa.int32())])


def angular_distance_deg(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Great-circle distance in degrees between positions given in degrees (broadcasts)."""
    ra1, dec1, ra2, dec2 = (np.radians(np.asarray(v, dtype=float)) for v in (ra1, dec1, ra2, dec2))
    cos = np.sin(dec1) * np.sin(dec2) + np.cos(dec1) * np.cos(dec2) * np.cos(ra1 - ra2)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


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
        distance = angular_distance_deg(table["ra"].to_numpy(), table["dec"].to_numpy(), center_ra, center_dec)
        parts.append(table.filter(pa.array(distance <= radius_deg)))
    return pa.concat_tables(parts) if parts else HISTORY_SCHEMA.empty_table()


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
        self._max_bytes = max_bytes
        self._size = size or (lambda _: 0)
        self._bytes = 0
        self._entries: OrderedDict[Path, tuple[tuple[int, int, int], T, int]] = OrderedDict()

    def get(self, path: Path) -> T:
        """The loaded content of ``path`` (FileNotFoundError if it is gone)."""
        stat = path.stat()
        version = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        entry = self._entries.get(path)
        if entry is not None and entry[0] == version:
            self._entries.move_to_end(path)
            return entry[1]
        value = self._load(path)
        self._drop(path)
        nbytes = self._size(value)
        self._entries[path] = (version, value, nbytes)
        self._bytes += nbytes
        while self._max_bytes is not None and self._bytes > self._max_bytes and len(self._entries) > 1:
            self._drop(next(iter(self._entries)))
        return value

    def forget_missing(self, present: set[Path]) -> None:
        """Drop the entries of files no longer listed."""
        for path in [p for p in self._entries if p not in present]:
            self._drop(path)

    def _drop(self, path: Path) -> None:
        entry = self._entries.pop(path, None)
        if entry is not None:
            self._bytes -= entry[2]
