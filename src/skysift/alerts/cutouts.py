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
from astropy.wcs import WCSHDO_P14, WCSHDO_all

from skysift.io.fits import Sections, build_wcs

__all__ = ["cutout_fits"]

#: FITS block size and card length.
_BLOCK, _CARD = 2880, 80


@lru_cache(maxsize=64)
def _image_cards(ny: int, nx: int) -> str:
    """The cards astropy's PrimaryHDU puts before a given header's own for an ny x nx float32 image."""
    return fits.PrimaryHDU(np.zeros((ny, nx), dtype=np.float32), fits.Header()).header.tostring(endcard=False,
                                                                                                padding=False)


class _WcsCards:
    """The cards of ``cut.to_header(relax=True)`` for the WCS of any cut-out of one image,
    from the image's own WCS header made once: a cut-out's WCS differs from the image's only
    in its reference pixel, so its header differs only in the CRPIX cards, which are read
    from wcslib's header of the cut-out's WCS as astropy reads them. Making the
    astropy header of every cut-out cost most of the cut-outs' time."""

    _KEYS = ("CRPIX1", "CRPIX2")

    def __init__(self, wcs) -> None:
        cards = wcs.to_header(relax=True).cards
        self.images = [card.image for card in cards]
        self.at = {card.keyword: i for i, card in enumerate(cards) if card.keyword in self._KEYS}
        self.flags = WCSHDO_P14 | WCSHDO_all  # what WCS.to_header(relax=True) asks wcslib for

    def text(self, cut_wcs) -> str:
        images = list(self.images)
        if self.at:
            text = cut_wcs.wcs.to_header(self.flags)
            found = {text[k : k + 8].rstrip(): text[k : k + _CARD] for k in range(0, len(text), _CARD)
                     if text[k : k + 8].rstrip() in self.at}
            if len(found) != len(self.at):  # not the header this class knows: astropy's own, whole
                return cut_wcs.to_header(relax=True).tostring(endcard=False, padding=False)
            for key, i in self.at.items():
                images[i] = fits.Card.fromstring(found[key]).image  # as astropy's header of that text has it
        return "".join(images)


def _alert_cards(alert: dict) -> str:
    header = fits.Header()
    header["ALERTID"] = alert["alert_id"]
    header["RULE"] = alert["rule"]
    return header.tostring(endcard=False, padding=False)


def _primary_fits(data: np.ndarray, cards: str) -> bytes:
    """``fits.PrimaryHDU(data, header).writeto(...)``'s bytes for 2-D float32 ``data`` and a
    header of ordinary ``cards`` (their text; no structural keyword of its own, as a WCS header has none)."""
    ny, nx = data.shape
    text = _image_cards(ny, nx) + cards + "END".ljust(_CARD)
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
        wcs_cards = _WcsCards(wcs) if wcs is not None else None
        ny, nx = image.shape
        reach = size_px // 2 + 2  # every pixel Cutout2D may take, whatever the rounding
        for alert in alerts:
            x0, y0 = max(0, int(alert["x"]) - reach), max(0, int(alert["y"]) - reach)
            x1, y1 = min(nx, int(alert["x"]) + reach + 1), min(ny, int(alert["y"]) + reach + 1)
            data, _ = image.read(y0, y1, x0, x1)
            cut = Cutout2D(data, (alert["x"] - x0, alert["y"] - y0), size_px, wcs=wcs[y0:y1, x0:x1] if wcs else None,
                           mode="partial", fill_value=np.nan)
            cards = wcs_cards.text(cut.wcs) if cut.wcs is not None else ""
            out.append(_primary_fits(cut.data.astype(np.float32), cards + _alert_cards(alert)))
    return out
