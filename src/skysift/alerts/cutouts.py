"""FITS cut-outs around alerted sources, read as sections (never the whole image).

Each cut-out is the file astropy writes for ``PrimaryHDU(data, header)`` (the test compares
them byte for byte): the header's cards are astropy's, but the file is put together here
(:func:`_primary_fits`), as building and verifying an HDU object per cut-out cost twice the
rest of the work.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from astropy.io import fits

from skysift.io.fits import Sections, build_wcs

__all__ = ["cutout_fits"]

#: FITS block size and card length.
_BLOCK, _CARD = 2880, 80


@lru_cache(maxsize=64)
def _image_cards(ny: int, nx: int) -> str:
    """The cards astropy's PrimaryHDU puts before a given header's own for an ny x nx float32 image."""
    return fits.PrimaryHDU(np.zeros((ny, nx), dtype=np.float32), fits.Header()).header.tostring(endcard=False,
                                                                                                padding=False)


def _primary_fits(data: np.ndarray, header: fits.Header) -> bytes:
    """``fits.PrimaryHDU(data, header).writeto(...)``'s bytes for 2-D float32 ``data`` and a
    ``header`` of ordinary cards (no structural keyword of its own, as a WCS header has none)."""
    ny, nx = data.shape
    text = _image_cards(ny, nx) + header.tostring(endcard=False, padding=False) + "END".ljust(_CARD)
    text += " " * (-len(text) % _BLOCK)
    pixels = np.ascontiguousarray(data, dtype=">f4").tobytes()
    return text.encode("ascii") + pixels + b"\0" * (-len(pixels) % _BLOCK)


def cutout_fits(image_uri: str, hdu: int | None, alerts: list[dict], size_px: int, *,
                with_wcs: bool = True) -> list[bytes]:
    """Small FITS cutouts around each alert's source, each read as a section; with the
    image's WCS unless ``with_wcs`` is False (a WCS that is not trusted is not passed on)."""
    if not alerts:
        return []
    from astropy.nddata import Cutout2D  # astropy.nddata: only when there is a cut-out to make

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
            out.append(_primary_fits(cut.data.astype(np.float32), header))
    return out
