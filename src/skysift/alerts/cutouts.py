"""FITS cut-outs around alerted sources, read as sections (never the whole image).

Each cut-out is the file astropy writes for ``PrimaryHDU(data, header)`` (the test compares
them byte for byte): the header's cards are astropy's, but the file is put together here
(:func:`_primary_fits`), as building and verifying an HDU object per cut-out cost twice the
rest of the work.
"""

from __future__ import annotations

import copy
import re
from functools import lru_cache

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, WCSHDO_P14, WCSHDO_all
from cachetools import LRUCache

from skysift.io.fits import Sections, build_wcs
from skysift.io.storage import local_version

__all__ = ["cutout_fits"]

#: FITS block size and card length.
_BLOCK, _CARD = 2880, 80


@lru_cache(maxsize=64)
def _image_cards(ny: int, nx: int) -> str:
    """The cards astropy's PrimaryHDU puts before a given header's own for an ny x nx float32 image."""
    return fits.PrimaryHDU(np.zeros((ny, nx), dtype=np.float32), fits.Header()).header.tostring(endcard=False,
                                                                                                padding=False)


class _WcsCards:
    """The cards of ``cut.wcs.to_header(relax=True)`` for the cut-outs of one image, made
    from the image's own WCS header once: a cut-out's WCS (the image's sliced to the section
    read, then cut by ``Cutout2D``) differs from the image's only in its reference pixel, so
    its header differs only in the CRPIX cards. Those are wcslib's cards for the shifted
    reference pixel (the same two subtractions as ``WCS.slice`` and ``Cutout2D`` make), as
    astropy reads them. Slicing and copying a WCS and making an astropy header per cut-out
    cost most of the cut-outs' time."""

    _KEYS = ("CRPIX1", "CRPIX2")

    def __init__(self, wcs) -> None:
        cards = wcs.to_header(relax=True).cards
        self.images = [card.image for card in cards]
        self.at = {card.keyword: i for i, card in enumerate(cards) if card.keyword in self._KEYS}
        self.flags = WCSHDO_P14 | WCSHDO_all  # what WCS.to_header(relax=True) asks wcslib for
        self.crpix = np.array(wcs.wcs.crpix, dtype=np.float64)
        self.shifted = copy.deepcopy(wcs.wcs)  # a Wcsprm whose reference pixel is moved per cut-out
        self.usable = len(self.at) == len(self._KEYS) and wcs.naxis == 2

    def text(self, x0: int, y0: int, origin: tuple[int, int]) -> str | None:
        """The cards of the cut-out whose section starts at (x0, y0) and whose ``Cutout2D``
        origin in that section is ``origin`` (x, y); None when they cannot be made here."""
        if not self.usable:
            return None
        crpix = self.crpix.copy()
        crpix[0] -= x0  # WCS.slice: crpix[axis] -= start, axis by axis
        crpix[1] -= y0
        crpix -= origin  # Cutout2D: crpix -= its true origin
        self.shifted.crpix = crpix
        text = self.shifted.to_header(self.flags)
        found = {text[k : k + 8].rstrip(): text[k : k + _CARD] for k in range(0, len(text), _CARD)
                 if text[k : k + 8].rstrip() in self.at}
        if len(found) != len(self.at):
            return None
        images = list(self.images)
        for key, i in self.at.items():
            images[i] = _as_astropy_reads(found[key])
        return "".join(images)


#: A card of a plain real value as wcslib writes CRPIXj (``KEYWORD = value / comment``, FITS's
#: fixed format): astropy reads it back as it is, so its image is the text itself.
_PLAIN_REAL_CARD = re.compile(r"[A-Z0-9_-]{1,8} {0,7}= +[-+]?[0-9]+\.?[0-9]*(E[-+]?[0-9]+)?( / [ -~]*)?")


def _as_astropy_reads(card: str) -> str:
    """The image astropy's header gives the card ``card`` (wcslib's text): the text itself for a
    plain real value card (54,000 CRPIX cards of values from 1e-12 to 5e3: all equal), else
    ``Card.fromstring(card).image`` (verified, perhaps fixed). A Card costs ~0.15 ms."""
    if len(card) == _CARD and _PLAIN_REAL_CARD.fullmatch(card.rstrip()):
        return card
    return fits.Card.fromstring(card).image


def _string_card(keyword: str, value: str) -> str:
    """The image of ``fits.Card(keyword, value)`` for a string ``value``: formatted here as
    astropy formats it (quotes doubled, at least 8 characters between the quotes, the value
    field 20 wide, the card 80) when it fits on one card in printable ASCII, else astropy's
    own (long strings, other characters). A Card costs ~0.3 ms, mostly reading astropy's
    configuration: two per cut-out were a quarter of the cut-outs' time."""
    if value and value.isascii() and value.isprintable() and len(keyword) <= 8:
        quoted = "'{:8}'".format(value.replace("'", "''"))
        image = f"{keyword.upper():8}= {quoted:20}"
        if len(image) <= _CARD:
            return f"{image:{_CARD}}"
    return fits.Card(keyword, value).image


#: Images whose WCS a process keeps (:func:`_image_wcs`).
WCS_MEMO_SIZE = 8
_wcs_memo: LRUCache[tuple, WCS | None] = LRUCache(maxsize=WCS_MEMO_SIZE)


def _image_wcs(uri: str, hdu: int | str | None, header: fits.Header) -> WCS | None:
    """``build_wcs(header)`` of an image's ``header``, made once per local file version in this
    process (the last :data:`WCS_MEMO_SIZE`): a survey's reference stamps come from the same
    earliest image for every later one, and a WCS costs ~20 ms to build. Only read from
    here (a cut-out's own WCS is a slice, its cards a copy's: :class:`_WcsCards`)."""
    version = local_version(uri)
    key = None if version is None else (version, hdu)
    if key in _wcs_memo:
        return _wcs_memo[key]  # (the most recently used now)
    wcs = build_wcs(header)
    if key is not None:
        _wcs_memo[key] = wcs
    return wcs


def _alert_cards(alert: dict) -> str:
    """The ALERTID and RULE cards (what ``header[key] = value`` makes, without a header)."""
    return _string_card("ALERTID", alert["alert_id"]) + _string_card("RULE", alert["rule"])


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
        wcs = _image_wcs(image_uri, hdu, image.header) if with_wcs else None
        wcs_cards = _WcsCards(wcs) if wcs else None
        ny, nx = image.shape
        reach = size_px // 2 + 2  # every pixel Cutout2D may take, whatever the rounding
        for alert in alerts:
            x0, y0 = max(0, int(alert["x"]) - reach), max(0, int(alert["y"]) - reach)
            x1, y1 = min(nx, int(alert["x"]) + reach + 1), min(ny, int(alert["y"]) + reach + 1)
            data, _ = image.read(y0, y1, x0, x1)
            position = (alert["x"] - x0, alert["y"] - y0)
            cut = Cutout2D(data, position, size_px, mode="partial", fill_value=np.nan)
            cards = ""
            if wcs:
                origin = (cut.origin_original[0] - cut.slices_cutout[1].start,
                          cut.origin_original[1] - cut.slices_cutout[0].start)
                cards = wcs_cards.text(x0, y0, origin)
                if cards is None:  # a WCS this shortcut does not know: astropy's own header of the cut-out
                    cut_wcs = Cutout2D(data, position, size_px, wcs=wcs[y0:y1, x0:x1], mode="partial",
                                       fill_value=np.nan).wcs
                    cards = cut_wcs.to_header(relax=True).tostring(endcard=False, padding=False)
            out.append(_primary_fits(cut.data.astype(np.float32), cards + _alert_cards(alert)))
    return out
