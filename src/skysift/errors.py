"""Typed errors with stable reason codes.

Every failure a user can cause (a bad file, an unsupported WCS, an image too large
for the chosen path) raises a subclass of :class:`SkysiftError`. Its ``reason`` is a
stable, machine-readable code that lands in quarantine records and the ``images``
table; its message says what happened and what to do about it.
"""

from __future__ import annotations


class SkysiftError(Exception):
    """Base class of every error skysift raises on purpose.

    Parameters
    ----------
    message : str
        What went wrong, in words a person can act on.
    uri : str, optional
        The file or object the error is about.
    """

    reason = "error"
    #: Retrying the same input cannot succeed (a bad file stays bad).
    permanent = True

    def __init__(self, message: str, *, uri: str | None = None) -> None:
        self.message = message
        self.uri = uri
        super().__init__(f"{uri}: {message}" if uri else message)

    def to_record(self) -> dict[str, str | None]:
        """The error as a flat record for quarantine rows and state payloads."""
        return {
            "error_type": type(self).__name__,
            "reason": self.reason,
            "message": self.message,
            "uri": self.uri,
        }


class InvalidImage(SkysiftError):
    """The input cannot be read as a usable image."""

    reason = "invalid_image"


class NotFITS(InvalidImage):
    reason = "not_fits"


class TruncatedFile(InvalidImage):
    reason = "truncated"


class EmptyImage(InvalidImage):
    reason = "empty"


class NoImageHDU(InvalidImage):
    reason = "no_image_hdu"


class AllNaN(InvalidImage):
    reason = "all_nan"


class ImageTooLarge(InvalidImage):
    reason = "too_large"


class UnsupportedWCS(SkysiftError):
    """The image has no celestial WCS, so sources cannot be placed on the sky."""

    reason = "unsupported_wcs"


class DetectionFailed(SkysiftError):
    """Source extraction failed even after raising SEP's limits and the threshold."""

    reason = "detection_failed"


class ConfigError(SkysiftError):
    """A settings file, flag or alert rule is malformed."""

    reason = "bad_config"


class SourceNotFound(SkysiftError):
    """A path or object does not exist."""

    reason = "not_found"
