"""Large images in bounded memory: tiles with overlap, measured apart, joined at seams.

An image is cut into core tiles on a grid aligned with the background mesh; each
tile is read with a margin around it (astropy's ``section``: only those rows are read,
from disk, S3 ranges or compressed tiles), measured on its own, and keeps only the
sources whose centre lies in its core. A source cut by a core edge is therefore
measured whole from the tile that contains it, and appears once. Because the margin
spans several background cells, the sky under every core is estimated from the same
pixels as in a whole-image run.

Memory: each worker holds one tile and SEP's working arrays, about
:data:`BYTES_PER_PIXEL` bytes per pixel read; :func:`tile_size_for_memory` inverts this
model, and :func:`pixels_for_memory` gives the largest image the in-memory path takes
in a given memory (the router's small/large threshold).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import partial

import numpy as np
from astropy.io import fits

from skysift.errors import AllNaN, ConfigError
from skysift.io.fits import ImageInfo, Sections, build_wcs, inspect_with_header
from skysift.measure.frame import (
    Measurement,
    PixelMeasurement,
    combine,
    finish_catalog,
    measure_pixels,
)
from skysift.parallel.strips import map_forked
from skysift.settings import Settings

__all__ = [
    "BASE_MEMORY_BYTES",
    "BYTES_PER_PIXEL",
    "Tile",
    "measure_tiled",
    "pixels_for_memory",
    "plan_tiles",
    "read_tile",
    "tile_size_for_memory",
]

#: Peak bytes per pixel of one in-memory measurement (float32 data, RMS map, SEP's
#: filtered copy and buffers, mask, read buffer), measured: see BENCHMARKS.md.
BYTES_PER_PIXEL = 40
#: Interpreter, libraries and catalog: memory used whatever the image.
BASE_MEMORY_BYTES = 200 * 2**20


def pixels_for_memory(memory_bytes: int) -> int:
    """Largest image (pixels) one in-memory measurement fits in ``memory_bytes``."""
    return max(0, (memory_bytes - BASE_MEMORY_BYTES) // BYTES_PER_PIXEL)


@dataclass(frozen=True)
class Tile:
    """A core region [x0, x1) x [y0, y1) read with margins as [rx0, rx1) x [ry0, ry1)."""

    x0: int
    x1: int
    y0: int
    y1: int
    rx0: int
    rx1: int
    ry0: int
    ry1: int

    @property
    def read_pixels(self) -> int:
        return (self.rx1 - self.rx0) * (self.ry1 - self.ry0)


def tile_size_for_memory(memory_bytes: int, workers: int, margin_px: int, box_px: int) -> int:
    """Core tile side (a multiple of the background cell) whose tiles fit the budget."""
    per_worker = pixels_for_memory(memory_bytes // max(1, workers))
    side = math.isqrt(per_worker) - 2 * margin_px
    side -= side % box_px
    if side < 2 * box_px:
        raise ConfigError(
            f"a memory budget of {memory_bytes / 2**20:.0f} MiB for {workers} worker(s) leaves no room for a tile "
            f"(each worker needs {BASE_MEMORY_BYTES / 2**20:.0f} MiB plus {BYTES_PER_PIXEL} bytes per pixel): "
            "raise --max-memory or use fewer workers"
        )
    return side


def plan_tiles(nx: int, ny: int, tile_px: int, margin_px: int) -> list[Tile]:
    """Core tiles of ``tile_px`` (the last ones smaller) with ``margin_px`` margins, clipped."""
    tiles = []
    for y0 in range(0, ny, tile_px):
        for x0 in range(0, nx, tile_px):
            x1, y1 = min(nx, x0 + tile_px), min(ny, y0 + tile_px)
            tiles.append(Tile(x0, x1, y0, y1, max(0, x0 - margin_px), min(nx, x1 + margin_px),
                              max(0, y0 - margin_px), min(ny, y1 + margin_px)))
    return tiles


def read_tile(uri: str, hdu: int, tile: Tile) -> tuple[np.ndarray, np.ndarray]:
    """The tile's read region as native float32 with its NaN/BLANK mask, nothing more."""
    with Sections(uri, hdu, block_size=2**20, gzip_in_memory=False) as image:  # memory stays bounded
        return image.read(tile.ry0, tile.ry1, tile.rx0, tile.rx1)


def _measure_tile(uri: str, hdu: int, tile: Tile, header: fits.Header, settings: Settings) -> PixelMeasurement | None:
    """One tile's sources (those centred in its core), or None when every pixel is masked."""
    data, mask = read_tile(uri, hdu, tile)
    if mask.all():
        return None
    pixels = measure_pixels(data, mask, header, settings)
    x = pixels.columns["x"] + tile.rx0
    y = pixels.columns["y"] + tile.ry0
    keep = (x >= tile.x0 - 0.5) & (x < tile.x1 - 0.5) & (y >= tile.y0 - 0.5) & (y < tile.y1 - 0.5)
    return pixels.take(keep).shifted(tile.rx0, tile.ry0)


def measure_tiled(uri: str, settings: Settings, *, hdu: int | str | None = None, tile_px: int | None = None,
                  workers: int = 1, inspected: tuple[ImageInfo, fits.Header] | None = None,
                  ) -> tuple[ImageInfo, Measurement, fits.Header]:
    """Measure an image tile by tile, never holding more than one tile per worker.

    ``tile_px`` defaults to what ``settings.limits.max_memory_bytes`` allows for
    ``workers`` processes. ``inspected`` is the image's description and header when
    the caller has read them already; its ``checksum_status`` is returned as given (the
    pipeline verifies the checksum before measuring, see
    :func:`skysift.io.fits.with_streamed_checksum`).
    """
    t0 = time.perf_counter()
    info, header = inspected or inspect_with_header(uri, hdu, survey_default=settings.survey,
                                        limits=settings.limits.header_limits())
    margin, box = settings.limits.tile_margin_px, settings.background.box_px
    if tile_px is None:
        tile_px = tile_size_for_memory(settings.limits.max_memory_bytes, workers, margin, box)
    tile_px = max(box, tile_px - tile_px % box)  # tiles are whole background cells
    tiles = plan_tiles(info.nx, info.ny, tile_px, margin)
    n = len(tiles)
    measure_one = partial(_measure_tile, info.uri, info.hdu, header=header, settings=settings)
    parts = map_forked(measure_one, tiles, workers) if workers > 1 and n > 1 else [measure_one(t) for t in tiles]
    parts = [p for p in parts if p is not None]
    if not parts:
        raise AllNaN("every pixel is NaN, infinite or BLANK", uri=info.uri)
    merged = combine(parts)
    merged.timings["read_s"] = 0.0
    measurement = finish_catalog(merged, build_wcs(header), info, header, settings)
    measurement.stats["n_tiles"] = len(tiles)
    measurement.timings["tiled_s"] = time.perf_counter() - t0
    return info, measurement, header
