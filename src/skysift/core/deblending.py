"""Blends split the same way whatever else is on the frame.

SEP's deblender hands the faint outer pixels of a blend to its components at random
(SExtractor's ``gatherup``), drawing from one random sequence per ``sep.extract`` call
that restarts from the same seed. How a blend is split therefore depends on how many
draws the blends scanned before it used: a tile or a strip of the image scans other
blends first, so the same blend came out with slightly different pixels, fluxes and
shapes in a tiled run than in a whole-image run.

:func:`isolate_blends` re-extracts every blend on its own, from the same seed, so that
its split depends on its own pixels only. Whole-image, strip and tile runs then give
the same components. Two small extractions per blend:

1. the blend's neighbourhood, with a segmentation map, to learn the blend's pixels
   (the parent detection, which SEP does not return);
2. the parent alone: the error map is made huge outside those pixels so nothing else
   can be detected, while the image itself is untouched, so the filtered image, the
   thresholds and the deblending tree are exactly those of the full frame.

:func:`isolate_blends_segmented` also keeps SEP's segmentation map true: every pixel of
a re-extracted blend goes to the component its own extraction gave it, so the map says
which pixels belong to which returned source (photometry corrects neighbours with it,
:mod:`skysift.core.photometry`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from itertools import combinations

import numpy as np
import sep
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

__all__ = [
    "UNDETECTABLE_ERROR",
    "Extractor",
    "isolate_blends",
    "isolate_blends_segmented",
    "shift_objects",
]

#: An error so large no pixel can reach the threshold (finite, so SEP's sums stay finite).
UNDETECTABLE_ERROR = np.float32(1e30)
#: Cell of the spatial hash that pairs up nearby blend components.
_HASH_CELL_PX = 64
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)

#: ``extract(data, error, mask, segmentation_map)`` runs SEP with the caller's settings.
Extractor = Callable[..., object]


def isolate_blends(data: np.ndarray, error: np.ndarray | float, mask: np.ndarray | None,
                   objects: np.ndarray, extract: Extractor, margin_px: int) -> np.ndarray:
    """``objects`` with every deblended component replaced by its blend's isolated extraction.

    Parameters
    ----------
    data, error, mask : the arrays the first extraction ran on.
    objects : SEP's output for them.
    extract : runs ``sep.extract`` with the same threshold, filter and deblending
        settings: ``extract(data, error, mask, segmentation_map=bool)``.
    margin_px : pixels around a blend needed to filter it exactly (filter half-size + 1).
    """
    return _isolate(data, error, mask, objects, extract, margin_px, None)[0]


def isolate_blends_segmented(data: np.ndarray, error: np.ndarray | float, mask: np.ndarray | None,
                             objects: np.ndarray, segmap: np.ndarray, extract: Extractor,
                             margin_px: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`isolate_blends`, and each returned source's label in ``segmap``.

    ``segmap`` is SEP's segmentation map of ``objects`` (label = row + 1, 0 = sky); it is
    updated in place: the pixels of every blend extracted alone go to its new components,
    labelled after the existing ones. The other labels stay as they are (relabelling a
    whole frame costs more than the rest).
    """
    return _isolate(data, error, mask, objects, extract, margin_px, segmap)


def _isolate(data, error, mask, objects: np.ndarray, extract: Extractor, margin_px: int,
             segmap: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    is_merged = (objects["flag"] & sep.OBJ_MERGED) != 0
    merged = np.flatnonzero(is_merged)
    labels_of = [np.flatnonzero(~is_merged) + 1]  # segmap labels of the parts of ``kept``
    if merged.size == 0:
        return objects, labels_of[0]
    error_map = np.broadcast_to(np.asarray(error, dtype=np.float32), data.shape)
    components = objects[merged]
    kept = [objects[~is_merged]]
    next_label = len(objects) + 1
    for group in _neighbour_groups(components):
        parents, unplaced = _parent_footprints(data, error_map, mask, components[group], extract, margin_px)
        kept.append(components[group][unplaced])  # never lose a source (not expected to happen)
        labels_of.append(merged[group][unplaced] + 1)
        replaced = merged[group][~unplaced] + 1
        for y0, x0, fp in parents:
            found, cut = _extract_alone(data, error_map, mask, y0, x0, fp, extract, margin_px,
                                        segmentation_map=segmap is not None)
            kept.append(found)
            labels_of.append(np.arange(next_label, next_label + len(found)))
            if segmap is not None:
                rows, cols, labels = cut
                window = segmap[rows, cols]
                mine = (labels > 0) & ((window == 0) | np.isin(window, replaced))
                window[np.isin(window, replaced) & ~mine] = 0
                window[mine] = labels[mine] + (next_label - 1)
            next_label += len(found)
    return np.concatenate(kept), np.concatenate(labels_of)


def shift_objects(objects: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """A copy of SEP's ``objects`` with positions moved by (dx, dy) pixels."""
    moved = objects.copy()
    for name in ("x", "xmin", "xmax", "xcpeak", "xpeak"):
        moved[name] += dx
    for name in ("y", "ymin", "ymax", "ycpeak", "ypeak"):
        moved[name] += dy
    return moved


def _neighbour_groups(components: np.ndarray) -> list[np.ndarray]:
    """Indices of components whose boxes touch, transitively (a blend's parts always do)."""
    x0, x1 = components["xmin"].astype(int), components["xmax"].astype(int)
    y0, y1 = components["ymin"].astype(int), components["ymax"].astype(int)
    cells: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i in range(len(components)):
        for cy in range(y0[i] // _HASH_CELL_PX, y1[i] // _HASH_CELL_PX + 1):
            for cx in range(x0[i] // _HASH_CELL_PX, x1[i] // _HASH_CELL_PX + 1):
                cells[cx, cy].append(i)
    pairs = {
        (i, j)
        for members in cells.values()
        for i, j in combinations(members, 2)
        if x0[i] <= x1[j] + 1 and x0[j] <= x1[i] + 1 and y0[i] <= y1[j] + 1 and y0[j] <= y1[i] + 1
    }
    n = len(components)
    edges = np.array(sorted(pairs), dtype=int).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return [np.flatnonzero(labels == label) for label in np.unique(labels)]


def _cutout(shape: tuple[int, int], y0: int, y1: int, x0: int, x1: int, margin: int) -> tuple[slice, slice]:
    ny, nx = shape
    return slice(max(0, y0 - margin), min(ny, y1 + 1 + margin)), slice(max(0, x0 - margin), min(nx, x1 + 1 + margin))


def _parent_footprints(data, error_map, mask, components, extract: Extractor, margin: int):
    """(y0, x0, boolean footprint) in image pixels of each parent detection of ``components``,
    and which components were found in none."""
    rows, cols = _cutout(data.shape, int(components["ymin"].min()), int(components["ymax"].max()),
                         int(components["xmin"].min()), int(components["xmax"].max()), margin)
    # (the error map may be a read-only broadcast of a scalar, which SEP refuses: copy it)
    _, segmap = extract(np.ascontiguousarray(data[rows, cols]), np.array(error_map[rows, cols]),
                        None if mask is None else np.ascontiguousarray(mask[rows, cols]), segmentation_map=True)
    labels, _ = ndimage.label(segmap > 0, structure=_EIGHT_CONNECTED)
    peaks = labels[components["ycpeak"] - rows.start, components["xcpeak"] - cols.start]
    boxes = ndimage.find_objects(labels)
    parents = [(rows.start + boxes[label - 1][0].start, cols.start + boxes[label - 1][1].start,
                labels[boxes[label - 1]] == label) for label in np.unique(peaks[peaks > 0])]
    return parents, peaks == 0


def _extract_alone(data, error_map, mask, y0: int, x0: int, footprint: np.ndarray, extract: Extractor,
                   margin: int, segmentation_map: bool = False):
    """SEP's components of one parent detection, extracted with nothing else detectable,
    and (rows, cols, segmentation map of the cut-out) when ``segmentation_map``."""
    h, w = footprint.shape
    rows, cols = _cutout(data.shape, y0, y0 + h - 1, x0, x0 + w - 1, margin)
    error = np.full((rows.stop - rows.start, cols.stop - cols.start), UNDETECTABLE_ERROR, dtype=np.float32)
    allowed = np.zeros(error.shape, dtype=bool)
    allowed[y0 - rows.start : y0 - rows.start + h, x0 - cols.start : x0 - cols.start + w] = footprint
    allowed = ndimage.binary_dilation(allowed, structure=_EIGHT_CONNECTED)
    error[allowed] = error_map[rows, cols][allowed]
    found = extract(np.ascontiguousarray(data[rows, cols]), error,
                    None if mask is None else np.ascontiguousarray(mask[rows, cols]),
                    segmentation_map=segmentation_map)
    if segmentation_map:
        found, labels = found
        return shift_objects(found, cols.start, rows.start), (rows, cols, labels)
    return shift_objects(found, cols.start, rows.start), None
