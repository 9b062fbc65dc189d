"""Search attributes of the skysift Fido client, registered as ``sunpy.net.attrs.skysift``.

Importing :mod:`skysift.timelag.fido` registers them; then::

    from sunpy.net import Fido, attrs as a
    Fido.search(a.Time("2011-02-15", "2011-02-15 12:00"), a.Wavelength(171 * u.AA),
                a.skysift.Index("~/skysift-data"))
"""

from __future__ import annotations

import os

from sunpy.net.attr import SimpleAttr

__all__ = ["Index"]


class Index(SimpleAttr):
    """Which skysift images index to search.

    Parameters
    ----------
    value : str or path-like
        A skysift home directory (local tables), or
        ``athena://DATABASE?workgroup=W&output=s3://...`` for the Glue table via Athena.
    """

    def __init__(self, value: str | os.PathLike[str]) -> None:
        super().__init__(os.fspath(value))
