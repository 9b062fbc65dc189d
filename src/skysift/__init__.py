"""skysift: astronomical FITS images in, a queryable source catalog and alerts out.

The science core (``fitsio``, ``background``, ``detection``, ``photometry``,
``astrometry``, ``calibration``, ``classification``) takes arrays and plain values
and never touches AWS. ``pipeline`` runs one image end to end; adapters
(``tables``, ``alerts``, ``query``, ``skysift.aws``) hold the I/O. ``objects``
associates the detections of all images into objects; ``query_output`` turns query
results into text, CSV, JSON or Parquet with their types.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("skysift")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
