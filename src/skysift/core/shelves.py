"""Boxes laid side by side in one array: shelves of boxes, tallest first.

Detection's companion search and photometry's neighbour correction each measure many small
boxes of an image in one call by laying them out in a mosaic; this is that layout, one for both.
"""

from __future__ import annotations

import numpy as np

__all__ = ["shelf_layout"]


def shelf_layout(widths: np.ndarray, heights: np.ndarray) -> tuple[list[int], list[int], tuple[int, int]]:
    """Where each box (``widths[k]`` x ``heights[k]`` pixels) goes: its first column and row in
    the mosaic, and the mosaic's shape. Boxes are placed tallest first (stable), left to right
    on shelves about 1.2 times as wide as a square of their total area (at least the widest box)."""
    widths, heights = np.asarray(widths), np.asarray(heights)
    width = int(max(widths.max(), np.sqrt((heights * widths).sum()) * 1.2))
    xs, ys = [0] * len(widths), [0] * len(widths)
    shelf_y = shelf_h = cursor = 0
    w, h = widths.tolist(), heights.tolist()  # Python ints: one pass per box, and numpy scalars' arithmetic is slow
    for k in np.argsort(-heights, kind="stable").tolist():
        if cursor + w[k] > width:
            shelf_y, shelf_h, cursor = shelf_y + shelf_h, 0, 0
        xs[k], ys[k] = cursor, shelf_y
        cursor += w[k]
        shelf_h = max(shelf_h, h[k])
    return xs, ys, (shelf_y + shelf_h, width)
