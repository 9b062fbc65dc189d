"""Typed errors with stable reason codes: the one error hierarchy of skysift.

Every failure a user can cause (a bad file, an unsupported WCS, an image too large
for the chosen path) raises a subclass of :class:`SkysiftError`. Its ``reason`` is a
stable, machine-readable code that lands in quarantine records and the ``images``
table; its message says what happened and what to do about it.

Whether trying again can help is a property of the class, :attr:`SkysiftError.transient`
(False unless a class says otherwise): a bad file stays bad, a worker killed for memory or
a service that could not be reached may go through later. Every consumer reads that one
attribute: the CLI's exit status, the Batch workers' exit codes, and the AWS steps, whose
handlers raise ``TransientError`` (retried by the state machine) or ``PermanentError``
(caught, to Quarantine) from it (:mod:`skysift.aws.faults`).
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AllNaN",
    "ChecksumMismatch",
    "ConfigError",
    "DetectionFailed",
    "EmptyImage",
    "ImageTooLarge",
    "InternalError",
    "InvalidHeader",
    "InvalidImage",
    "MalformedEvent",
    "NoImageHDU",
    "NotFITS",
    "NotWritable",
    "SkysiftError",
    "SourceNotFound",
    "TruncatedFile",
    "UnsupportedWCS",
    "WorkerDied",
]


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
    #: Retrying the same input later may succeed (False: a bad file stays bad).
    transient: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "permanent" in vars(cls):  # the attribute this one replaced: it would be silently ignored
            raise TypeError(f"{cls.__name__}: set 'transient' (True or False), not 'permanent'")

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


class MalformedEvent(SkysiftError):
    """A step's input does not match its event model (the state machine, or whoever invoked
    the function, sent something else). Permanent: the same input fails the same way."""

    reason = "malformed_event"


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


class NotWritable(SkysiftError):
    """An output cannot be written: its directory is missing or read-only, it is a
    directory, or its bucket does not exist. Checked before the work that produces it."""

    reason = "not_writable"


class InvalidHeader(InvalidImage):
    """A header that cannot describe a real image: bad BITPIX or NAXISn, absurd sizes,
    too many extensions, or a declared data size no object of this size can hold."""

    reason = "bad_header"


class ChecksumMismatch(InvalidImage):
    """``CHECKSUM``/``DATASUM`` present and not matching the bytes (quarantined only
    when the ``reject_bad_checksum`` setting is on; otherwise recorded in ``images``)."""

    reason = "bad_checksum"


class InternalError(SkysiftError):
    """An unexpected exception inside one image's processing (a bug or a library edge).

    The image gets a failed row with the original exception's class, message and a
    digest of its traceback, and the run goes on.
    """

    reason = "internal_error"

    def __init__(self, message: str, *, uri: str | None = None, exception_type: str = "",
                 traceback_digest: str = "") -> None:
        super().__init__(message, uri=uri)
        self.exception_type = exception_type
        self.traceback_digest = traceback_digest

    @classmethod
    def from_exception(cls, exc: BaseException, *, uri: str | None = None) -> InternalError:
        """Wrap ``exc``: its class and message in the message, its traceback as a short digest."""
        import hashlib
        import traceback

        frames = traceback.extract_tb(exc.__traceback__)
        where = "; ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in frames[-4:])
        digest = hashlib.blake2b(where.encode(), digest_size=6).hexdigest()
        first_line = (str(exc).strip().splitlines() or [""])[0][:300]
        error = cls(f"{type(exc).__name__}: {first_line} (at {where or 'unknown'})", uri=uri,
                    exception_type=type(exc).__name__, traceback_digest=digest)
        error.__cause__ = exc  # kept, so that an adapter can still tell a transient cause (a throttled read)
        return error

    def to_record(self) -> dict[str, str | None]:
        return super().to_record() | {"exception_type": self.exception_type,
                                      "traceback_digest": self.traceback_digest}


class WorkerDied(SkysiftError):
    """A process measuring an image (or a tile or strip of it) died: killed by the kernel (out of
    memory) or a crash in compiled code. In a run's pool the image was first tried again alone,
    in a fresh process, which died as well.

    Transient: the same file may go through with more memory or fewer parallel workers.
    """

    reason = "worker_died"
    transient = True
