"""skysift: astronomical FITS images in, a queryable source catalog and alerts out.

Packages, in pipeline order (each imports only from those below it; ``make test`` checks
this with import-linter, see ``[tool.importlinter]`` in pyproject.toml):

``errors``, ``limits``, ``settings``  the base: one error hierarchy, header limits, settings
``core``      the science on arrays: background, detection, deblending, photometry, psf,
              classification, astrometry, calibration, header metadata, flags (no I/O)
``io``        storage (local, S3), the one header check, FITS reading (plain, gzip, tiled, MEF)
``parallel``  processes working on one frame (strips)
``measure``   one image to a catalog: in memory (``frame``) or in tiles (``tiled``)
``catalog``   schemas, typed records (``ImageRecord``), local Parquet tables, SQL (DuckDB), objects,
              exports, integrity, Arrow columns built and read without pandas (``arrow``)
``alerts``    the new-source rule, forced photometry, cut-outs, delivery
``pipeline``  the one router (``router``), one image end to end (``image``), a local survey run (``survey``)
``analysis``  cross-match, completeness, plots, synthetic skies
``timelag``   time-lag maps of solar image series (sunpy, reproject, dask)
``aws``       Step Functions steps, Lambda handlers, Batch worker, S3/Glue/SNS adapters;
              ``aws.emulation`` (moto) only with the ``emulate`` extra
``cli``       the ``skysift`` command
"""

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    """``__version__``, looked up (importlib.metadata) the first time it is asked for, so that
    importing skysift costs nothing (``skysift --help`` stays light)."""
    if name != "__version__":
        raise AttributeError(f"module 'skysift' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("skysift")
    except PackageNotFoundError:  # running from a source tree that is not installed
        found = "0.0.0+unknown"
    globals()["__version__"] = found
    return found
