"""The one router: which way an image goes, decided from its header before any pixel is read.

===============  ==========================================================================
``INDEX_ONLY``   a solar (helioprojective) image: described from its header, no pixel decoded
``LOCAL``        in memory, in one piece, on this machine
``SMALL``        in memory, in the AWS DetectSmall Lambda
``LARGE``        tile by tile in bounded memory (locally, or the AWS Batch job)
===============  ==========================================================================

:func:`choose_route` is the whole decision. The local pipeline
(:func:`skysift.pipeline.image.process_image`) calls it on the header it views first; the
AWS Inspect step calls it on the header it inspects, with the Lambda's own ceiling
(``small_image_max_pixels``), and the later steps follow the route it chose.
"""

from __future__ import annotations

from typing import Protocol

from skysift.catalog.records import Route, WcsKind
from skysift.measure.tiled import pixels_for_memory
from skysift.settings import Settings

__all__ = ["Inspected", "choose_route", "in_memory_pixel_limit", "is_catalogued"]


class Inspected(Protocol):
    """What the router reads of an image's header: an :class:`~skysift.io.fits.ImageInfo`, or
    the :class:`~skysift.io.fits.HeaderView` the local pipeline takes before hashing the file."""

    @property
    def pixels(self) -> int: ...

    @property
    def wcs_kind(self) -> WcsKind: ...


def is_catalogued(image: Inspected) -> bool:
    """Whether an image gets a source catalog: every image but a solar (helioprojective) one.

    A celestial image is catalogued with sky positions (null, with the reason, when its WCS
    cannot be trusted); an image without celestial axes (blank CTYPEs, a lab frame) gets a
    pixel catalog, RA/Dec null, as Source Extractor gives; a helioprojective image is only
    indexed, for the solar time-lag workload (:mod:`skysift.timelag`), which reads its pixels itself.
    """
    return image.wcs_kind is not WcsKind.HELIOPROJECTIVE


def in_memory_pixel_limit(settings: Settings) -> int:
    """Largest image measured in one piece; larger ones take the tiled path."""
    return min(settings.limits.max_pixels, pixels_for_memory(settings.limits.max_memory_bytes))


def choose_route(image: Inspected, settings: Settings, *, requested: Route | str | None = None,
                 small_image_max_pixels: int | None = None) -> Route:
    """The route of one image, from its header and the settings.

    1. An image that is not catalogued (:func:`is_catalogued`) is ``INDEX_ONLY``, whatever
       was asked for: there is nothing to measure.
    2. ``requested`` ``LARGE`` or ``INDEX_ONLY`` is followed (the Batch job measures in tiles
       whatever the size; the AWS Record step indexes what Inspect routed so).
    3. Otherwise the image is measured in memory when it fits :func:`in_memory_pixel_limit`
       and, when given, ``small_image_max_pixels`` (the Lambda's ceiling): ``SMALL`` when
       that ceiling is given or ``SMALL`` was asked for, else ``LOCAL``; and ``LARGE``
       when it does not fit.
    """
    requested = Route(requested) if requested is not None else None
    if not is_catalogued(image):
        return Route.INDEX_ONLY
    if requested in (Route.LARGE, Route.INDEX_ONLY):
        return requested
    limit = in_memory_pixel_limit(settings)
    if small_image_max_pixels is not None:
        limit = min(limit, small_image_max_pixels)
    if image.pixels > limit:
        return Route.LARGE
    return Route.SMALL if small_image_max_pixels is not None or requested is Route.SMALL else Route.LOCAL
