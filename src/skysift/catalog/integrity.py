"""Health of a local home's tables: find damaged Parquet files, move them aside, clean up.

A file can be damaged by a disk filling up, a copy cut short, or a person's hand
(writes themselves are atomic: a temporary file renamed into place). One damaged
file must not make the whole catalog unreadable, so :class:`~skysift.catalog.query.LocalCatalog`
names it in a :class:`DamagedTable` error, and ``skysift check`` lists every damaged
file and, with ``--repair``, moves them under ``{home}/damaged/`` (keeping their
relative path), after which the images they held are simply not done: the next
``skysift run`` measures them again. Temporary files left by a killed writer
(``.{image_id}.*.tmp``) are removed here too.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from skysift.catalog.records import ImageStatus
from skysift.errors import SkysiftError

__all__ = [
    "ORPHAN_AGE_S",
    "DamagedFile",
    "DamagedTable",
    "check_file",
    "damaged_file_error",
    "damaged_table_error",
    "find_damaged",
    "images_without_sources",
    "move_aside",
    "remove_orphan_temporaries",
    "table_files",
]

log = logging.getLogger(__name__)

#: A temporary file younger than this may belong to a writer still at work.
ORPHAN_AGE_S = 3600.0
_FILE_IN_MESSAGE = re.compile(r"""['"]([^'"]+\.parquet)['"]""")


class DamagedTable(SkysiftError):
    """A table file cannot be read; ``skysift check --repair`` moves it aside."""

    reason = "damaged_table"


@dataclass(frozen=True)
class DamagedFile:
    """One table file that cannot be read, and why."""

    path: Path
    problem: str


def table_files(home: Path) -> list[Path]:
    """Every Parquet file of the home's tables, sorted."""
    return sorted((Path(home) / "tables").glob("*/*/*/*/*.parquet"))


def check_file(path: Path, *, deep: bool = False) -> str | None:
    """Why ``path`` cannot be read as Parquet, or None when it can.

    The footer (schema, row groups) is always read; ``deep`` reads every column too
    (slower, catches a damaged page inside a file whose footer is intact).
    """
    try:
        parquet = pq.ParquetFile(path)
        if deep:
            parquet.read()
    except (pa.ArrowException, OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else 'unreadable'}"
    return None


def find_damaged(home: Path, *, deep: bool = False) -> list[DamagedFile]:
    """Every table file under ``home`` that cannot be read."""
    damaged = []
    for path in table_files(home):
        problem = check_file(path, deep=deep)
        if problem is not None:
            damaged.append(DamagedFile(path, problem))
    return damaged


def move_aside(home: Path, damaged: list[DamagedFile]) -> list[Path]:
    """Move damaged files to ``{home}/damaged/`` under their path relative to the home."""
    moved = []
    for item in damaged:
        target = Path(home) / "damaged" / item.path.relative_to(home)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(item.path, target)
        moved.append(target)
        log.info("moved damaged %s to %s (%s)", item.path, target, item.problem)
    return moved


def images_without_sources(home: Path, gone: list[DamagedFile] = ()) -> list[DamagedFile]:
    """``images`` files with an ``ok`` row whose ``sources`` rows are gone (moved aside).

    Files in ``gone`` count as already missing. Moving these aside too makes the next run measure those images again, instead of
    skipping them as done with no catalog.
    """
    from skysift.catalog import compaction

    root = Path(home) / "tables"
    present: set[str] = set()
    excluded = {item.path for item in gone}
    for path in (root / "sources").glob("*/*/*/*.parquet"):
        if path in excluded:
            continue
        if path.name.startswith(compaction.COMPACTED_PREFIX):
            present.update(compaction.image_ids_of(path))
        else:
            present.add(path.stem)
    orphaned = []
    for path in (root / "images").glob("*/*/*/*.parquet"):
        if path in excluded:
            continue
        rows = pq.read_table(path, columns=["image_id", "status", "n_sources"]).to_pylist()
        missing = [r["image_id"] for r in rows if r["status"] == ImageStatus.OK and (r["n_sources"] or 0) > 0
                   and r["image_id"] not in present]
        if missing:
            orphaned.append(DamagedFile(path, f"the sources of {len(missing)} image(s) it lists are gone"))
    return orphaned


def remove_orphan_temporaries(home: Path, *, older_than_s: float = ORPHAN_AGE_S) -> list[Path]:
    """Delete temporary files that killed writers left under ``{home}/tables``."""
    removed = []
    cutoff = time.time() - older_than_s
    for path in (Path(home) / "tables").glob("*/*/*/*/.*.tmp"):
        try:
            if path.stat().st_mtime <= cutoff:
                path.unlink()
                removed.append(path)
        except FileNotFoundError:
            continue
    return removed


def damaged_file_error(path: Path, exc: Exception, home: Path) -> DamagedTable:
    """The one-line :class:`DamagedTable` of a table file that Arrow could not read."""
    first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
    return DamagedTable(f"table file {path} is damaged ({first}); "
                        f"run 'skysift --home {home} check --repair' to move it aside", uri=str(path))


def damaged_table_error(exc: Exception, home: Path) -> DamagedTable | None:
    """A :class:`DamagedTable` naming the file when ``exc`` (from DuckDB or Arrow) is about one."""
    match = _FILE_IN_MESSAGE.search(str(exc))
    if match is None:
        return None
    path = Path(match.group(1))
    if not path.is_absolute():
        path = Path.cwd() / path
    if check_file(path) is None:
        return None
    return DamagedTable(f"table file {match.group(1)} is damaged ({str(exc).splitlines()[0][:160]}); "
                        f"run 'skysift --home {home} check --repair' to move it aside")
