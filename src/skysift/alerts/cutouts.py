"""FITS cut-outs around alerted sources, read as sections (never the whole image)."""

from __future__ import annotations

import io

import numpy as np
from astropy.io import fits
from astropy.nddata import Cutout2D

from skysift.io.fits import Sections, build_wcs

__all__ = ["cutout_fits"]


def cutout_fits(image_uri: str, hdu: int | None, alerts: list[dict], size_px: int, *,
                with_wcs: bool = True) -> list[bytes]:
    """Small FITS cutouts around each alert's source, each read as a section; with the
    image's WCS unless ``with_wcs`` is False (a WCS that is not trusted is not passed on)."""
    if not alerts:
        return []
    out = []
    with Sections(image_uri, hdu) as image:
        wcs = build_wcs(image.header) if with_wcs else None
        ny, nx = image.shape
        reach = size_px // 2 + 2  # every pixel Cutout2D may take, whatever the rounding
        for alert in alerts:
            x0, y0 = max(0, int(alert["x"]) - reach), max(0, int(alert["y"]) - reach)
            x1, y1 = min(nx, int(alert["x"]) + reach + 1), min(ny, int(alert["y"]) + reach + 1)
            data, _ = image.read(y0, y1, x0, x1)
            cut = Cutout2D(data, (alert["x"] - x0, alert["y"] - y0), size_px, wcs=wcs[y0:y1, x0:x1] if wcs else None,
                           mode="partial", fill_value=np.nan)
            header = cut.wcs.to_header(relax=True) if cut.wcs is not None else fits.Header()
            header["ALERTID"] = alert["alert_id"]
            header["RULE"] = alert["rule"]
            buffer = io.BytesIO()
            fits.PrimaryHDU(cut.data.astype(np.float32), header).writeto(buffer)
            out.append(buffer.getvalue())
    return out
