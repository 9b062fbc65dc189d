"""Source flag bits: SEP's own (1-128) and skysift's (256 and up).

A source's ``flags`` column is the bitwise OR of these. ``CLEAN_MASK`` selects the
flags that make a measurement unreliable (used by alert rules and seeing estimates).
The bits are plain ints (SEP's constants are numpy int16, which bit 65536 overflows).
"""

from __future__ import annotations

import sep

__all__ = [
    "APER_ALL_MASKED",
    "APER_CONTAMINATED",
    "APER_HAS_MASKED",
    "APER_NONPOSITIVE",
    "APER_TRUNCATED",
    "CLEAN_MASK",
    "CROWDED",
    "DEBLEND_OVERFLOW",
    "MERGED",
    "NAMES",
    "NEAR_EDGE",
    "SATURATED",
    "SINGULAR",
    "TRUNCATED",
    "WCS_INVALID",
    "aperture_flags",
    "describe",
]

MERGED = int(sep.OBJ_MERGED)  # 1: deblended from a blend
TRUNCATED = int(sep.OBJ_TRUNC)  # 2: footprint touches the image edge
DEBLEND_OVERFLOW = int(sep.OBJ_DOVERFLOW)  # 4
SINGULAR = int(sep.OBJ_SINGU)  # 8: degenerate shape
APER_TRUNCATED = int(sep.APER_TRUNC) << 4  # 256: an aperture runs off the image
APER_HAS_MASKED = int(sep.APER_HASMASKED) << 4  # 512: an aperture contains masked pixels
APER_ALL_MASKED = int(sep.APER_ALLMASKED) << 4  # 1024
APER_NONPOSITIVE = int(sep.APER_NONPOSITIVE) << 4  # 2048: non-positive flux in the Kron aperture
NEAR_EDGE = 4096  # within the detection kernel of the image edge
SATURATED = 8192  # peak at or above the saturation level
CROWDED = 16384  # the image was extracted at a raised threshold after SEP overflowed
# the header names sky axes but its WCS cannot be trusted: ra, dec (and what needs them) are null.
# Not set in the pixel catalog of an image without celestial axes (images.wcs_status 'none'),
# whose ra, dec are null too: its sources are not at fault, they have no sky position to give.
WCS_INVALID = 32768
# other sources' pixels covered over 10% of the Kron aperture or of the first-moment ellipse
# (Source Extractor's flag 1); the fluxes are corrected (skysift.photometry: they were replaced by
# the pixels opposite them through the source's centre, MASK_TYPE CORRECT), so it is not in CLEAN_MASK
APER_CONTAMINATED = 65536

NAMES = {
    MERGED: "merged",
    TRUNCATED: "truncated",
    DEBLEND_OVERFLOW: "deblend_overflow",
    SINGULAR: "singular",
    APER_TRUNCATED: "aper_truncated",
    APER_HAS_MASKED: "aper_has_masked",
    APER_ALL_MASKED: "aper_all_masked",
    APER_NONPOSITIVE: "aper_nonpositive",
    NEAR_EDGE: "near_edge",
    SATURATED: "saturated",
    CROWDED: "crowded",
    WCS_INVALID: "wcs_invalid",
    APER_CONTAMINATED: "aper_contaminated",
}

#: Flags that make a source unsuitable for seeing estimates and alerts.
CLEAN_MASK = (
    TRUNCATED | APER_TRUNCATED | APER_HAS_MASKED | APER_ALL_MASKED | APER_NONPOSITIVE
    | NEAR_EDGE | SATURATED | SINGULAR
)


def aperture_flags(sep_aperture_flags):
    """SEP aperture flags (1-byte values) shifted into skysift's bit range."""
    return sep_aperture_flags.astype("int64") << 4


def describe(value: int) -> list[str]:
    """Names of the bits set in ``value``, for people."""
    return [name for bit, name in NAMES.items() if value & bit]
