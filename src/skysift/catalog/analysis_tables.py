"""The analysis tables ``matches`` and ``injections``: same layout as the catalog tables.

``matches`` (from :mod:`skysift.analysis.crossmatch`) holds one row per source matched to a
reference catalog; ``injections`` (from :mod:`skysift.analysis.completeness`) one row per
artificial star injected into an image. Both are Hive-partitioned Parquet under
``{home}/tables/{table}/survey=S/band=B/obs_night=N/{image_id}.parquet``, written with
:class:`skysift.catalog.tables.LocalTables` so a re-run replaces an image's rows; every
:class:`skysift.catalog.query.LocalCatalog` (and so ``skysift query``) has a view of each.
"""

from __future__ import annotations

import os

import pyarrow as pa

from skysift.catalog.query import LocalCatalog
from skysift.catalog.records import ImageRecord
from skysift.catalog.schema import PARTITION_KEYS, TIMESTAMP, _field
from skysift.catalog.tables import LocalTables

__all__ = [
    "ANALYSIS_TABLES",
    "INJECTIONS_SCHEMA",
    "MATCHES_SCHEMA",
    "analysis_catalog",
    "attach",
    "write_rows",
]

MATCHES_SCHEMA = pa.schema(
    [
        _field("image_id", pa.string(), "", "image of the matched source", False),
        _field("source_id", pa.string(), "", "sources.source_id", False),
        _field("ref_id", pa.string(), "", "identifier in the reference catalog (row number when it has none)"),
        _field("reference", pa.string(), "", "name of the reference catalog (file stem or 'gaia_dr3')"),
        _field("ra", pa.float64(), "deg", "source right ascension, ICRS"),
        _field("dec", pa.float64(), "deg", "source declination, ICRS"),
        _field("ref_ra", pa.float64(), "deg", "reference right ascension"),
        _field("ref_dec", pa.float64(), "deg", "reference declination"),
        _field("sep_arcsec", pa.float64(), "arcsec", "angular separation source - reference"),
        _field("dra_arcsec", pa.float64(), "arcsec", "(ra - ref_ra) * cos(dec)"),
        _field("ddec_arcsec", pa.float64(), "arcsec", "dec - ref_dec"),
        _field("n_candidates", pa.int32(), "", "reference objects within the match radius"),
        _field("mag_ab", pa.float32(), "mag", "source AB magnitude (null without a zero point)"),
        _field("ref_mag", pa.float64(), "mag", "reference magnitude"),
        _field("dmag", pa.float64(), "mag", "mag_ab - ref_mag (zero-point difference)"),
        _field("snr", pa.float32(), "", "source SNR"),
        _field("star_score", pa.float32(), "", "source star/galaxy score"),
        _field("flags", pa.int32(), "", "source flags"),
        _field("radius_arcsec", pa.float64(), "arcsec", "match radius used"),
        _field("matched_at", TIMESTAMP, "UTC"),
    ],
    metadata={"table": "matches", "partition_keys": ",".join(PARTITION_KEYS)},
)

INJECTIONS_SCHEMA = pa.schema(
    [
        _field("image_id", pa.string(), "", "image the star was injected into", False),
        _field("round", pa.int32(), "", "injection round (stars of one round share one detection run)"),
        _field("x", pa.float64(), "pix", "injected position, 0-based column"),
        _field("y", pa.float64(), "pix", "injected position, 0-based row"),
        _field("flux", pa.float64(), "count", "injected total flux"),
        _field("mag", pa.float64(), "mag", "injected magnitude (AB with a zero point, else instrumental)"),
        _field("recovered", pa.bool_(), "", "a detection within the match radius with a consistent flux"),
        _field("flux_measured", pa.float64(), "count", "Kron flux of the recovering detection"),
        _field("mag_measured", pa.float64(), "mag", "magnitude of flux_measured"),
        _field("seeing_fwhm_px", pa.float64(), "pix", "Moffat FWHM of the injected stars (the image's seeing)"),
        _field("tested_at", TIMESTAMP, "UTC"),
    ],
    metadata={"table": "injections", "partition_keys": ",".join(PARTITION_KEYS)},
)

ANALYSIS_TABLES = {"matches": MATCHES_SCHEMA, "injections": INJECTIONS_SCHEMA}


def write_rows(home: str | os.PathLike[str], table: str, image: ImageRecord, rows: pa.Table) -> str:
    """Replace one image's rows of an analysis table; returns the Parquet path.

    Parameters
    ----------
    home : path
        The skysift home directory.
    table : {'matches', 'injections'}
        Which analysis table.
    image : ImageRecord
        The image's ``images`` row (``image_id`` and the partition keys are used).
    rows : pyarrow.Table
        The rows, cast to the table's schema.
    """
    schema = ANALYSIS_TABLES[table]
    # LocalTables' writer is table-agnostic: atomic write, stale partitions removed.
    return LocalTables(home).write_rows(table, image, rows.select(schema.names).cast(schema))


def attach(catalog: LocalCatalog) -> LocalCatalog:
    """``catalog`` with its views defined again, so that tables written since it was made show.

    Every :class:`LocalCatalog` has the ``matches`` and ``injections`` views (empty ones
    when not written yet).
    """
    catalog.refresh()
    return catalog


def analysis_catalog(home: str | os.PathLike[str]) -> LocalCatalog:
    """A :class:`LocalCatalog` over ``home`` (every table, the analysis ones included)."""
    return LocalCatalog(home)

