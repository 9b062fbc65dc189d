"""A sunpy Fido client over skysift's images index.

With this module imported, ``Fido.search`` answers queries that include
``a.skysift.Index(...)`` from the index, without downloading anything::

    import skysift.timelag.fido  # registers the client and a.skysift
    res = Fido.search(a.Time("2011-02-15 00:00", "2011-02-15 12:00"),
                      a.Wavelength(171 * u.AA), a.Instrument("AIA"),
                      a.skysift.Index("~/skysift-data"))
    res[0]["uri"]            # local paths or s3:// URLs
    files = Fido.fetch(res, path="data/{file}")   # copies (local) or downloads (s3)

The ``Index`` attr is required, so queries without it still go to the usual
providers (VSO, JSOC, ...), and ours never goes to the network.
"""

from __future__ import annotations

import shutil
from datetime import UTC
from pathlib import Path
from typing import ClassVar

import astropy.units as u
import fsspec
from astropy.time import Time
from parfive import Results
from sunpy.net import attrs as a
from sunpy.net.attr import AttrAnd, AttrOr
from sunpy.net.base_client import BaseClient, QueryResponseTable

from skysift.io.storage import is_remote
from skysift.timelag.attrs import Index
from skysift.timelag.errors import InvalidRequest
from skysift.timelag.index import SeriesQuery, open_index, search_series

__all__ = ["SkysiftClient", "SkysiftResponse"]


class SkysiftResponse(QueryResponseTable):
    """Fido results from the skysift index: one row per frame, with its ``uri``."""

    hide_keys: ClassVar[list[str]] = ["image_id", "hdu"]


class SkysiftClient(BaseClient):
    """Search skysift's ``images`` index (local tables or Athena) from Fido."""

    @property
    def info_url(self) -> str:
        return "https://github.com/skysift/skysift"

    def search(self, *query) -> SkysiftResponse:
        """Search with ``a.Time``, ``a.Wavelength``, ``a.Instrument`` and the required ``a.skysift.Index``."""
        attrs = _flatten(query)
        by_type = {type(x): x for x in attrs}
        if Index not in by_type or a.Time not in by_type:
            raise InvalidRequest("a skysift search needs a.Time and a.skysift.Index")
        time_attr, index_attr = by_type[a.Time], by_type[Index]
        wave = by_type.get(a.Wavelength)
        instrument = by_type.get(a.Instrument)
        series = SeriesQuery(
            start=time_attr.start.to_datetime(timezone=UTC),
            end=time_attr.end.to_datetime(timezone=UTC),
            wavelength_angstrom=float(wave.min.to_value(u.AA, equivalencies=u.spectral())) if wave else None,
            wavelength_max_angstrom=float(wave.max.to_value(u.AA, equivalencies=u.spectral())) if wave else None,
            instrument=str(instrument.value) if instrument else None,
        )
        frame = search_series(open_index(index_attr.value), series)
        table = {
            "Start Time": Time(list(frame.obs_time.dt.tz_convert(None).to_numpy()), scale="utc") if len(frame) else Time([], format="isot", scale="utc"),
            "Instrument": list(frame.instrument.fillna("")),
            "Wavelength": frame.wavelength_angstrom.to_numpy(dtype=float) * u.AA,
            "Exposure": frame.exptime_s.to_numpy(dtype=float) * u.s,
            "uri": list(frame.uri),
            "image_id": list(frame.image_id),
            "hdu": frame.hdu.to_numpy(dtype=int),
        }
        return SkysiftResponse(table, client=self)

    def fetch(self, query_results, *, path=None, downloader=None, **kwargs) -> Results:
        """Copy (local) or download (``s3://``) each frame to ``path`` (a directory or a ``{file}`` template)."""
        template = str(Path(path).expanduser()) if path is not None else str(Path.cwd() / "{file}")
        if "{file}" not in template:
            template = str(Path(template) / "{file}")
        overwrite = bool(kwargs.get("overwrite", False))
        results = Results()
        for row in query_results:
            uri = str(row["uri"])
            target = Path(template.format(file=Path(uri).name))
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                if overwrite or not target.exists():
                    if is_remote(uri):
                        fsspec.filesystem(uri.split("://", 1)[0]).get(uri, str(target))
                    else:
                        shutil.copyfile(uri, target)
            except OSError as exc:
                results.add_error(target.name, uri, exc)
                continue
            results.append(path=str(target), url=uri)
        return results

    @classmethod
    def _can_handle_query(cls, *query) -> bool:
        return cls.check_attr_types_in_query(query, {Index, a.Time}, {a.Wavelength, a.Instrument})

    @classmethod
    def _attrs_module(cls) -> tuple[str, str]:
        return "skysift", "skysift.timelag.attrs"

    @classmethod
    def register_values(cls) -> dict:
        return {a.Provider: [("skysift", "skysift images index (local tables or Athena)")]}


def _flatten(query: tuple) -> list:
    out = []
    for item in query:
        if isinstance(item, AttrAnd):
            out.extend(_flatten(tuple(item.attrs)))
        elif isinstance(item, AttrOr):
            raise InvalidRequest("OR queries are split by Fido before they reach the client")
        else:
            out.append(item)
    return out
