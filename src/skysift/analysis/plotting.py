"""Pictures people would rather look at than tables (matplotlib).

Each picture is a function that returns a :class:`matplotlib.figure.Figure` (made
without pyplot: no backend, window or global figure list is involved, so it is safe in
worker processes and servers, and a notebook shows it inline when a cell returns it),
and a twin that writes it to a PNG (``skysift plot``, ``skysift completeness --plot``).

Images are drawn from a :class:`DisplayImage`: block averages small enough to draw
(:data:`DISPLAY_MAX_SIDE`), read in bands or tiles by :func:`read_for_display` so that
drawing an image of any size stays within the configured memory budget. The blocks are
placed in the full image's pixel coordinates, so its WCS and its detections (measured
at full resolution) are drawn as they are.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import matplotlib
import numpy as np
import pandas as pd
import pyarrow as pa
from astropy.visualization import ImageNormalize, ZScaleInterval
from astropy.wcs import WCS
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse, Polygon

from skysift.core.background import estimate_background
from skysift.core.masks import masked_or_none
from skysift.io.fits import SECTION_BAND_BYTES, Sections, build_wcs
from skysift.measure.tiled import plan_tiles, tile_size_for_memory
from skysift.settings import Settings

__all__ = [
    "DISPLAY_MAX_SIDE",
    "DisplayImage",
    "block_mean",
    "catalog_overview",
    "completeness_figure",
    "completeness_plot",
    "crossmatch_figure",
    "crossmatch_plot",
    "detections_figure",
    "detections_overlay",
    "diagnostics_figure",
    "draw_footprints",
    "image_diagnostics",
    "overview_figure",
    "read_for_display",
    "save",
]

#: Longest side, in blocks, of an image as drawn; larger images are block-averaged down to it
#: (a figure is about 1000 pixels across, so nothing visible is lost).
DISPLAY_MAX_SIDE = 1024


@dataclass(frozen=True)
class DisplayImage:
    """An image reduced for drawing: means of ``factor`` x ``factor`` pixel blocks (counts).

    ``background`` and ``rms`` (the sky level and noise maps, same blocks) are present
    when asked for. Blocks with no valid pixel are NaN.
    """

    name: str
    shape: tuple[int, int]  # (ny, nx) of the full image
    data: np.ndarray
    factor: int
    wcs: WCS | None
    background: np.ndarray | None = None
    rms: np.ndarray | None = None

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """Where the blocks lie in full-resolution pixel coordinates (for ``imshow``)."""
        ny, nx = self.data.shape
        return (-0.5, nx * self.factor - 0.5, -0.5, ny * self.factor - 0.5)


def block_mean(data: np.ndarray, factor: int) -> np.ndarray:
    """Means of the finite pixels of ``factor`` x ``factor`` blocks of ``data`` (float32).

    Edge blocks may be partial; a block without a finite pixel is NaN.
    """
    finite = np.isfinite(data)
    if factor == 1:
        return np.where(finite, data, np.nan).astype(np.float32)
    starts_y, starts_x = np.arange(0, data.shape[0], factor), np.arange(0, data.shape[1], factor)
    sums = np.add.reduceat(np.add.reduceat(np.where(finite, data, 0), starts_y, axis=0, dtype=np.float64),
                           starts_x, axis=1)
    counts = np.add.reduceat(np.add.reduceat(finite.astype(np.int32), starts_y, axis=0), starts_x, axis=1)
    means = np.full(sums.shape, np.nan, np.float32)
    np.divide(sums, counts, out=means, where=counts > 0, casting="unsafe")
    return means


def read_for_display(uri: str, hdu: int | str | None, settings: Settings, *, background: bool = False,
                     max_side: int = DISPLAY_MAX_SIDE) -> DisplayImage:
    """The image as blocks of at most ``max_side`` per side, read without holding it whole.

    Without ``background``, bands of whole rows are read (each at most
    :data:`~skysift.io.fits.SECTION_BAND_BYTES` as float64). With it, the image is read in
    the tiles (with margins) that the large-image path uses under
    ``settings.limits.max_memory_bytes``, and each tile's sky level and RMS maps are
    averaged in the same blocks.
    """
    with Sections(uri, hdu, block_size=2**20, gzip_in_memory=False) as image:
        ny, nx = image.shape
        factor = max(1, math.ceil(max(ny, nx) / max_side))
        blocks = (math.ceil(ny / factor), math.ceil(nx / factor))
        maps = {name: np.full(blocks, np.nan, np.float32) for name in ("data", "background", "rms")[: 3 if background else 1]}
        if background:
            margin, box = settings.limits.tile_margin_px, settings.background.box_px
            step = box * factor // math.gcd(box, factor)  # cores on both the mesh and the block grid
            tile_px = tile_size_for_memory(settings.limits.max_memory_bytes, 1, margin, box)
            tile_px = max(step, tile_px - tile_px % step)
            for tile in plan_tiles(nx, ny, tile_px, margin):
                data, mask = image.read(tile.ry0, tile.ry1, tile.rx0, tile.rx1)
                if mask.all():
                    continue
                sky = estimate_background(data, masked_or_none(mask), settings.background)
                core = (slice(tile.y0 - tile.ry0, tile.y1 - tile.ry0), slice(tile.x0 - tile.rx0, tile.x1 - tile.rx0))
                for name, values in (("data", data), ("background", sky.model.back(dtype=np.float32)), ("rms", sky.rms)):
                    _put_blocks(maps[name], values[core], tile.y0, tile.x0, factor)
        else:
            rows = max(factor, SECTION_BAND_BYTES // (8 * nx) // factor * factor)
            for y0 in range(0, ny, rows):
                data, _ = image.read(y0, min(ny, y0 + rows), 0, nx)
                _put_blocks(maps["data"], data, y0, 0, factor)
        wcs = build_wcs(image.header)
    return DisplayImage(name=uri.rsplit("/", 1)[-1], shape=(ny, nx), data=maps["data"], factor=factor, wcs=wcs,
                        background=maps.get("background"), rms=maps.get("rms"))


def _put_blocks(out: np.ndarray, data: np.ndarray, y0: int, x0: int, factor: int) -> None:
    """Block means of ``data``, whose corner [y0, x0] lies on the block grid, into ``out``."""
    means = block_mean(data, factor)
    by, bx = y0 // factor, x0 // factor
    out[by : by + means.shape[0], bx : bx + means.shape[1]] = means


def detections_overlay(image: DisplayImage, sources: pa.Table | None, out_path: str, *, title: str | None = None,
                       max_ellipses: int = 5000) -> str:
    """:func:`detections_figure` written to the PNG ``out_path``; returns the path."""
    return save(detections_figure(image, sources, title=title, max_ellipses=max_ellipses), out_path)


def detections_figure(image: DisplayImage, sources: pa.Table | None, *, title: str | None = None,
                      max_ellipses: int = 5000) -> Figure:
    """The image (zscale) with each detection's Kron ellipse, coloured by star/galaxy score."""
    fig = Figure(figsize=(9, 8))
    ax = fig.add_subplot(111, projection=image.wcs) if image.wcs is not None else fig.add_subplot(111)
    _show(ax, image)
    n = _draw_detections(fig, ax, sources, max_ellipses)
    if image.wcs is not None:
        ax.set_xlabel("RA (ICRS)")
        ax.set_ylabel("Dec (ICRS)")
    ax.set_title(title or f"{image.name}: {n} detections")
    return fig


def _draw_detections(fig, ax, sources: pa.Table | None, max_ellipses: int) -> int:
    """Kron ellipses of ``sources`` on ``ax`` coloured by star score; returns the number of sources."""
    n = 0 if sources is None else sources.num_rows
    if n:
        cols = sources.select(["x", "y", "a", "b", "theta", "kron_radius", "star_score"]).to_pydict()
        cmap = matplotlib.colormaps["coolwarm_r"]
        for i in range(min(n, max_ellipses)):
            scale = max(2.5 * (cols["kron_radius"][i] or 1.0), 3.5)
            score = cols["star_score"][i]
            colour = cmap(score if score is not None and np.isfinite(score) else 0.5)
            ax.add_patch(Ellipse((cols["x"][i], cols["y"][i]), 2 * scale * cols["a"][i], 2 * scale * cols["b"][i],
                                 angle=np.degrees(cols["theta"][i]), fill=False, lw=0.7, color=colour))
        sm = ScalarMappable(norm=Normalize(0, 1), cmap=cmap)
        fig.colorbar(sm, ax=ax, fraction=0.046, pad=0.04, label="star score (1 = point source)")
    return n


def _show(ax, image: DisplayImage, data: np.ndarray | None = None, cmap: str = "gray", norm=None):
    """``data`` (default: the image's, zscaled) in the full image's pixel coordinates, cropped to them
    (edge blocks may reach past the image)."""
    if data is None:
        data = image.data
        norm = ImageNormalize(np.nan_to_num(data, nan=np.nanmedian(data)), interval=ZScaleInterval())
    shown = ax.imshow(data, origin="lower", cmap=cmap, norm=norm, interpolation="nearest", extent=image.extent)
    ax.set_xlim(-0.5, image.shape[1] - 0.5)
    ax.set_ylim(-0.5, image.shape[0] - 0.5)
    return shown


def save(fig: Figure, out_path: str | os.PathLike[str], *, dpi: int = 110) -> str:
    """Write ``fig`` as a PNG (or the format of the suffix); returns the path."""
    fig.savefig(out_path, dpi=dpi, bbox_inches="tight")
    return os.fspath(out_path)


def draw_footprints(ax, images: pd.DataFrame, **style) -> None:
    """Outline each image's footprint (``corners_ra``/``corners_dec``, deg) on RA/Dec axes."""
    for ra, dec in zip(images["corners_ra"], images["corners_dec"], strict=True):
        if ra is None or dec is None or len(ra) < 3:
            continue
        ax.add_patch(Polygon(np.c_[ra, dec], closed=True, fill=False, **({"lw": 1.2, "color": "k"} | style)))


def catalog_overview(sources: pd.DataFrame, images: pd.DataFrame, out_path: str, *, title: str | None = None) -> str:
    """:func:`overview_figure` written to the PNG ``out_path``; returns the path."""
    return save(overview_figure(sources, images, title=title), out_path)


def overview_figure(sources: pd.DataFrame, images: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Four panels: sky map with footprints, magnitude and SNR histograms, size-magnitude diagram.

    Parameters
    ----------
    sources : DataFrame
        ``sources`` rows with ``ra``, ``dec`` (deg), ``mag_ab`` (mag; instrumental
        ``-2.5 log10 flux`` is used where null), ``snr``, ``fwhm_arcsec`` and ``star_score``.
    images : DataFrame
        ``images`` rows with ``corners_ra`` and ``corners_dec`` (deg).
    """
    mag = sources["mag_ab"].astype(float)
    instrumental = mag.isna().all()
    if instrumental:
        with np.errstate(divide="ignore", invalid="ignore"):
            mag = -2.5 * np.log10(sources["flux"].astype(float).where(sources["flux"] > 0))
    label = "instrumental mag" if instrumental else "AB mag"
    score = sources["star_score"].astype(float).fillna(0.5)
    fig = Figure(figsize=(12, 10))
    axes = fig.subplots(2, 2)
    sky, hist_mag, hist_snr, size = axes.ravel()
    points = sky.scatter(sources["ra"], sources["dec"], c=mag, s=4, cmap="viridis_r")
    draw_footprints(sky, images)
    fig.colorbar(points, ax=sky, label=label)
    sky.invert_xaxis()
    sky.set(xlabel="RA (deg)", ylabel="Dec (deg)", title=f"{len(sources)} sources on {len(images)} images")
    finite = mag[np.isfinite(mag)]
    hist_mag.hist(finite, bins=max(10, min(60, len(finite) // 20 or 10)), color="steelblue")
    hist_mag.set(xlabel=label, ylabel="sources", title="brightness")
    snr = sources["snr"].astype(float)
    snr = snr[np.isfinite(snr) & (snr > 0)]
    if len(snr):
        hist_snr.hist(snr, bins=np.logspace(np.log10(max(snr.min(), 1.0)), np.log10(snr.max()) + 0.01, 40), color="indianred")
    hist_snr.set(xscale="log", xlabel="SNR", ylabel="sources", title="significance")
    sc = size.scatter(mag, sources["fwhm_arcsec"], c=score, s=5, cmap="coolwarm_r", vmin=0, vmax=1)
    fig.colorbar(sc, ax=size, label="star score (1 = point source)")
    size.set(xlabel=label, ylabel="FWHM (arcsec)", yscale="log", title="star / galaxy separation")
    if title:
        fig.suptitle(title)
    return fig


def image_diagnostics(image: DisplayImage, sources: pa.Table | None, out_path: str, *,
                      max_ellipses: int = 5000) -> str:
    """:func:`diagnostics_figure` written to the PNG ``out_path``; returns the path."""
    return save(diagnostics_figure(image, sources, max_ellipses=max_ellipses), out_path)


def diagnostics_figure(image: DisplayImage, sources: pa.Table | None, *, max_ellipses: int = 5000) -> Figure:
    """Three panels of one image: detections drawn on it, the background map and the RMS map (counts).

    ``image`` comes from :func:`read_for_display` with ``background=True``.
    """
    if image.background is None or image.rms is None:
        raise ValueError("image_diagnostics needs read_for_display(..., background=True)")
    fig = Figure(figsize=(19, 6), layout="constrained")
    ax_img, ax_back, ax_rms = fig.subplots(1, 3)
    _show(ax_img, image)
    n = _draw_detections(fig, ax_img, sources, max_ellipses)
    ax_img.set_title(f"{image.name}: {n} detections")
    for ax, data, name in ((ax_back, image.background, "background level"), (ax_rms, image.rms, "background RMS")):
        shown = _show(ax, image, data, cmap="magma")
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label="counts")
        ax.set_title(f"{name}: median {np.nanmedian(data):.4g} counts")
    for ax in (ax_img, ax_back, ax_rms):
        ax.set(xlabel="x (pix)", ylabel="y (pix)")
    return fig


def completeness_plot(curves: list[dict], out_path: str) -> str:
    """:func:`completeness_figure` written to the PNG ``out_path``; returns the path."""
    return save(completeness_figure(curves), out_path)


def completeness_figure(curves: list[dict]) -> Figure:
    """Recovered fraction vs injected magnitude, one line per image.

    ``curves`` are :meth:`skysift.analysis.completeness.CompletenessResult.to_json` dicts
    (``bins``, ``fit``, ``uri``, ``mag_system``).
    """
    from skysift.analysis.completeness import CompletenessFit

    fig = Figure(figsize=(8, 5.5))
    ax = fig.subplots()
    for curve in curves:
        centres = [(b["mag_lo"] + b["mag_hi"]) / 2 for b in curve["bins"]]
        values = [b["completeness"] for b in curve["bins"]]
        name = str(curve["uri"]).rsplit("/", 1)[-1]
        line = ax.plot(centres, values, "o", ms=4, label=f"{name}: m50 {curve['mag50']:.2f}")[0]
        grid = np.linspace(min(centres), max(centres), 200)
        ax.plot(grid, CompletenessFit(**curve["fit"])(grid), color=line.get_color(), lw=1)
    ax.axhline(0.5, color="grey", ls=":")
    ax.axhline(0.9, color="grey", ls=":")
    system = curves[0]["mag_system"] if curves else "AB"
    ax.set(xlabel=f"injected magnitude ({system})", ylabel="recovered fraction", ylim=(-0.02, 1.05),
           title="completeness from injected stars")
    ax.legend(fontsize=8)
    return fig


def crossmatch_plot(matches: pd.DataFrame, out_path: str, *, min_snr_zp: float = 20.0) -> str:
    """:func:`crossmatch_figure` written to the PNG ``out_path``; returns the path."""
    return save(crossmatch_figure(matches, min_snr_zp=min_snr_zp), out_path)


def crossmatch_figure(matches: pd.DataFrame, *, min_snr_zp: float = 20.0) -> Figure:
    """Astrometric offsets (arcsec) and magnitude differences of matched sources."""
    fig = Figure(figsize=(13, 5.5))
    ax_pos, ax_mag = fig.subplots(1, 2)
    ax_pos.scatter(matches["dra_arcsec"], matches["ddec_arcsec"], s=4, alpha=0.6)
    ax_pos.axhline(0, color="grey", lw=0.8)
    ax_pos.axvline(0, color="grey", lw=0.8)
    ax_pos.set(xlabel="dRA cos(Dec) (arcsec)", ylabel="dDec (arcsec)", aspect="equal",
               title=f"{len(matches)} matches: median ({matches['dra_arcsec'].median():+.3f}, "
                     f"{matches['ddec_arcsec'].median():+.3f}) arcsec")
    good = matches[(matches["snr"] >= min_snr_zp) & matches["dmag"].notna()]
    ax_mag.scatter(matches["ref_mag"], matches["dmag"], s=4, color="lightgrey", label="all")
    ax_mag.scatter(good["ref_mag"], good["dmag"], s=4, label=f"SNR >= {min_snr_zp:g}")
    if len(good):
        ax_mag.axhline(good["dmag"].median(), color="k", lw=1, label=f"median {good['dmag'].median():+.3f} mag")
    ax_mag.set(xlabel="reference mag", ylabel="mag_ab - reference mag", title="zero-point difference")
    ax_mag.legend(fontsize=8)
    return fig
