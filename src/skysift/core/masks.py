"""Pixel masks (True: ignore the pixel) and the cheap form of "nothing masked".

An image with no masked pixel (the common case) is given a read-only broadcast of False
instead of an array of its size (:func:`skysift.io.fits.compact_mask`): it holds no memory,
and is told apart from a real mask by its strides, without visiting its elements.
"""

from __future__ import annotations

import numpy as np

__all__ = ["masked_or_none", "nothing_masked"]


def nothing_masked(mask: np.ndarray) -> bool:
    """Whether ``mask`` is the broadcast of False that stands for "no pixel masked" (answered
    from its strides: ``mask.any()`` would visit every one of its elements, ~5 ms for 4096^2)."""
    return mask.size > 0 and not any(mask.strides) and not mask.flat[0]


def masked_or_none(mask: np.ndarray) -> np.ndarray | None:
    """``mask``, or None when it masks no pixel (what SEP is fastest without)."""
    return None if nothing_masked(mask) or not mask.any() else mask
