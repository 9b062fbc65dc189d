"""Limits of the header check, in a module light enough for settings to import.

:mod:`skysift.io.fitsheader` enforces them; :class:`skysift.settings.LimitSettings` carries
them from TOML, environment and flags (importing astropy there would slow every command).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "HeaderLimits"]


@dataclass(frozen=True)
class HeaderLimits:
    """How far a header may go before the file is refused (defaults suit real archives).

    ``max_axis_px`` is far above any real detector or mosaic (the largest survey images
    are tens of thousands of pixels a side); ``max_hdus`` above the largest mosaics (a
    few hundred CCDs); ``max_header_bytes`` allows ~200,000 cards.
    """

    max_hdus: int = 2000
    max_header_bytes: int = 16 * 2**20
    max_axis_px: int = 2**20
    #: a gzip file is never inflated past this, whatever its headers declare
    max_decompressed_bytes: int = 16 * 2**30


DEFAULT_LIMITS = HeaderLimits()
