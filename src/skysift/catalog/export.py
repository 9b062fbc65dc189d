"""Catalogs out of skysift in the formats astronomers open: FITS tables, VOTables, DS9 regions.

* **FITS binary table** and **VOTable** (astropy ``Table`` writers): every column keeps
  the unit and description of the table schema (:mod:`skysift.catalog.schema`), so TOPCAT,
  Aladin and astropy read ``ra`` in deg and ``flux`` in counts without being told.
* **DS9 regions** (the ``regions`` package): one Kron ellipse per source of one image,
  in sky coordinates (fk5, through the image's WCS stored in the ``images`` table) or,
  when the image has no trusted WCS, in image pixel coordinates. Stars (star score
  >= 0.5) are green, other sources cyan, flagged ones red; the text is the source
  number. Load it over the image: ``ds9 field.fits -regions field.reg``.
"""

from __future__ import annotations

import logging
import warnings
from enum import StrEnum
from pathlib import Path

import numpy as np
import pyarrow as pa
from astropy import units as u
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning

from skysift.catalog.schema import schema_for
from skysift.core.flags import CLEAN_MASK
from skysift.errors import SkysiftError

__all__ = [
    "ExportError",
    "ExportFormat",
    "ds9_regions",
    "image_wcs",
    "to_astropy",
    "write_regions",
    "write_table",
]

log = logging.getLogger(__name__)


class ExportError(SkysiftError):
    reason = "bad_export"


class ExportFormat(StrEnum):
    FITS = "fits"
    VOTABLE = "votable"
    DS9 = "ds9"

    @classmethod
    def from_path(cls, path: str | Path) -> ExportFormat:
        """The format a file name implies (``.fits``/``.fit``, ``.vot``/``.xml``, ``.reg``)."""
        name = str(path).lower()
        for suffixes, fmt in (((".fits", ".fit", ".fts"), cls.FITS), ((".vot", ".xml", ".votable"), cls.VOTABLE),
                              ((".reg",), cls.DS9)):
            if name.endswith(suffixes):
                return fmt
        raise ExportError(f"cannot tell the format from {path!r}: use .fits, .vot or .reg, or --format")


def to_astropy(table: pa.Table, table_name: str = "sources") -> Table:
    """An astropy Table of ``table`` with each column's unit and description from the schema."""
    schema = schema_for(table_name, 3)
    known = {f.name: f for f in schema}
    columns = {}
    for name in table.column_names:
        array = table[name]
        if pa.types.is_timestamp(array.type):
            values = np.array([v.isoformat() if v is not None else "" for v in array.to_pylist()])
        elif pa.types.is_list(array.type):
            continue  # FITS/VOTable cells of variable length are poorly supported by readers
        elif pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
            values = np.array([v if v is not None else "" for v in array.to_pylist()], dtype=str)
        elif pa.types.is_boolean(array.type):
            values = np.array([bool(v) for v in array.to_pylist()])
        elif pa.types.is_integer(array.type) and array.null_count:
            values = np.ma.masked_invalid(array.to_numpy(zero_copy_only=False).astype(float))
        else:
            values = array.to_numpy(zero_copy_only=False)
        columns[name] = values
    result = Table(columns)
    for name in result.colnames:
        meta = (known[name].metadata or {}) if name in known else {}
        unit = meta.get(b"unit", b"").decode()
        if unit and result[name].dtype.kind in "fiu":
            parsed = u.Unit(_astropy_unit(unit), parse_strict="silent")
            if not isinstance(parsed, u.UnrecognizedUnit):
                result[name].unit = parsed
        description = meta.get(b"description", b"").decode()
        if description:
            result[name].description = description
    return result


def _astropy_unit(unit: str) -> str:
    """The schema's short unit names as astropy spells them."""
    return {"count": "ct", "pix": "pix", "byte": "byte"}.get(unit, unit)


def write_table(table: pa.Table, path: str | Path, fmt: ExportFormat, table_name: str = "sources") -> Path:
    """Write ``table`` as a FITS binary table or a VOTable; returns the path."""
    path = Path(path)
    result = to_astropy(table, table_name)
    result.meta["EXTNAME"] = table_name.upper()
    if fmt is ExportFormat.FITS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", u.UnitsWarning)
            result.write(path, format="fits", overwrite=True)
    elif fmt is ExportFormat.VOTABLE:
        result.write(path, format="votable", overwrite=True)
    else:
        raise ExportError(f"{fmt} is not a table format")
    return path


def image_wcs(wcs_header: str | None) -> WCS | None:
    """The celestial WCS stored in an ``images`` row's ``wcs_header``, or None."""
    if not wcs_header:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(fits.Header.fromstring(wcs_header, sep="\n"), naxis=2, relax=True)
    return wcs if wcs.has_celestial else None


def ds9_regions(sources: pa.Table, wcs: WCS | None):
    """One Kron ellipse per source: sky regions through ``wcs``, else pixel regions."""
    from regions import EllipsePixelRegion, PixCoord, Regions

    shapes = []
    rows = sources.select([c for c in ("source_num", "x", "y", "a", "b", "theta", "kron_radius", "flags",
                                       "star_score", "ra") if c in sources.column_names]).to_pylist()
    for row in rows:
        scale = max(float(row.get("kron_radius") or 0.0) * 2.5, 3.5)  # the AUTO aperture (Kron factor 2.5)
        a, b = float(row.get("a") or 1.0) * scale, float(row.get("b") or 1.0) * scale
        region = EllipsePixelRegion(PixCoord(row["x"], row["y"]), width=2 * a, height=2 * b,
                                    angle=np.degrees(float(row.get("theta") or 0.0)) * u.deg)
        star = (row.get("star_score") or 0.0) >= 0.5
        color = "red" if (row.get("flags") or 0) & CLEAN_MASK else ("green" if star else "cyan")
        region.visual["color"] = color
        region.meta["text"] = str(row.get("source_num", ""))
        if wcs is not None and row.get("ra") is not None:
            sky = region.to_sky(wcs)
            sky.visual["color"], sky.meta["text"] = color, region.meta["text"]
            region = sky
        shapes.append(region)
    return Regions(shapes)


def write_regions(sources: pa.Table, wcs: WCS | None, path: str | Path) -> Path:
    """Write the sources of one image as a DS9 region file; returns the path."""
    path = Path(path)
    ds9_regions(sources, wcs).write(str(path), format="ds9", overwrite=True)
    return path
