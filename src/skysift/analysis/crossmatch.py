"""Cross-match the ``sources`` table with a reference catalog: astrometry and zero points.

The reference (Parquet or CSV with ``ra``, ``dec`` in degrees and optionally a
magnitude, or Gaia DR3 fetched with astroquery) is bucketed by HEALPix cell
(order :data:`BUCKET_ORDER`, ~14 arcmin cells) so that each image is matched only
against the reference objects around its footprint: memory and time grow with the
size of one image, not of the whole survey or reference. Within an image, every
source/reference pair closer than the match radius is found with astropy's
``search_around_sky`` and the pairs are made one-to-one, closest first.

The result is the ``matches`` table (one row per matched source, see
:data:`skysift.catalog.analysis_tables.MATCHES_SCHEMA`) and a :class:`CrossmatchReport` with
the astrometric offsets (median ``dRA cos(Dec)`` and ``dDec``, robust scatter, in
arcsec) and the photometric zero-point difference (median ``mag_ab - ref_mag``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from astropy import units as u
from astropy.coordinates import SkyCoord, search_around_sky
from astropy.io import fits
from astropy.stats import mad_std
from astropy.wcs import WCS
from astropy_healpix import HEALPix

from skysift.catalog.analysis_tables import MATCHES_SCHEMA, analysis_catalog, write_rows
from skysift.catalog.records import ImageRecord, ImageStatus
from skysift.catalog.tables import LocalTables
from skysift.core.astrometry import sky_to_pixel
from skysift.errors import SkysiftError

__all__ = [
    "BUCKET_ORDER",
    "DEC_NAMES",
    "ID_NAMES",
    "MAG_NAMES",
    "RA_NAMES",
    "BadReference",
    "CrossmatchError",
    "CrossmatchReport",
    "NothingToMatch",
    "Reference",
    "ReferenceUnavailable",
    "crossmatch",
    "fetch_gaia",
    "pair_up",
    "read_reference",
    "robust_sigma",
]

log = logging.getLogger(__name__)

#: HEALPix order of the reference buckets (nside 256, cells ~13.7 arcmin across).
BUCKET_ORDER = 8
_BUCKETS = HEALPix(nside=2**BUCKET_ORDER, order="nested")
RA_NAMES = ("ra", "ra_deg", "raj2000", "ra_icrs", "_raj2000")
DEC_NAMES = ("dec", "dec_deg", "dej2000", "de_icrs", "dec_icrs", "_dej2000")
MAG_NAMES = ("mag", "phot_g_mean_mag", "rmag", "r_mag", "psfmag_r", "gmag")
ID_NAMES = ("ref_id", "source_id", "objid", "id")


class CrossmatchError(SkysiftError):
    """The cross-match could not be done."""

    reason = "crossmatch_failed"


class BadReference(CrossmatchError):
    """The reference catalog is missing, unreadable or lacks positions."""

    reason = "bad_reference"


class ReferenceUnavailable(CrossmatchError):
    """An online reference (Gaia) could not be fetched: no network, or astroquery missing."""

    reason = "reference_unavailable"
    transient = True


class NothingToMatch(CrossmatchError):
    """The local tables hold no measured image to match."""

    reason = "no_sources"


@dataclass(frozen=True)
class Reference:
    """A reference catalog in memory: positions (deg), magnitudes and ids."""

    name: str
    ra: np.ndarray
    dec: np.ndarray
    mag: np.ndarray  # NaN where unknown
    ref_id: np.ndarray  # str
    bucket: np.ndarray  # HEALPix cell at BUCKET_ORDER

    def __len__(self) -> int:
        return len(self.ra)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, name: str, mag_column: str | None = None) -> Reference:
        """Build from a DataFrame whose columns follow common names (``ra``/``RAJ2000``...)."""
        lower = {c.lower(): c for c in frame.columns}

        def pick(names: Iterable[str]) -> str | None:
            return next((lower[n] for n in names if n in lower), None)

        ra_col, dec_col = pick(RA_NAMES), pick(DEC_NAMES)
        if ra_col is None or dec_col is None:
            raise BadReference(f"needs ra and dec columns in degrees; found {list(frame.columns)}", uri=name)
        if mag_column is not None and mag_column.lower() not in lower:
            raise BadReference(f"no column {mag_column!r}; found {list(frame.columns)}", uri=name)
        mag_col = lower[mag_column.lower()] if mag_column else pick(MAG_NAMES)
        id_col = pick(ID_NAMES)
        ra = pd.to_numeric(frame[ra_col], errors="coerce").to_numpy(float)
        dec = pd.to_numeric(frame[dec_col], errors="coerce").to_numpy(float)
        good = np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90.0)
        if not good.any():
            raise BadReference("no row has a finite ra and dec", uri=name)
        mag = pd.to_numeric(frame[mag_col], errors="coerce").to_numpy(float) if mag_col else np.full(len(frame), np.nan)
        ids = frame[id_col].astype(str).to_numpy() if id_col else np.arange(len(frame)).astype(str)
        ra, dec = np.mod(ra[good], 360.0), dec[good]
        bucket = np.asarray(_BUCKETS.lonlat_to_healpix(ra * u.deg, dec * u.deg), dtype=np.int64)
        return cls(name=name, ra=ra, dec=dec, mag=mag[good], ref_id=ids[good].astype(object), bucket=bucket)

    def around(self, ra_deg: float, dec_deg: float, radius_deg: float) -> np.ndarray:
        """Row numbers of the objects in the HEALPix cells touching a cone (a superset of it)."""
        cells = _BUCKETS.cone_search_lonlat(ra_deg * u.deg, dec_deg * u.deg, radius=radius_deg * u.deg)
        return np.flatnonzero(np.isin(self.bucket, cells))


def read_reference(path: str | os.PathLike[str], mag_column: str | None = None) -> Reference:
    """Read a reference catalog from Parquet or CSV.

    Parameters
    ----------
    path : path
        ``.parquet``/``.pq`` or ``.csv`` (anything else is tried as CSV).
    mag_column : str, optional
        Magnitude column; default the first of ``mag``, ``phot_g_mean_mag``, ``rmag`` ...
        present. Without one, zero-point differences are not computed.

    Raises
    ------
    BadReference
        The file is missing or unreadable, or has no ``ra``/``dec`` columns (degrees).
    """
    path = Path(path)
    try:
        frame = pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise BadReference(f"cannot read the reference catalog: {exc}", uri=str(path)) from exc
    return Reference.from_frame(frame, path.stem, mag_column)


def fetch_gaia(cones: Iterable[tuple[float, float, float]], *, row_limit: int = 200_000) -> Reference:
    """Gaia DR3 sources in cones (RA, Dec, radius; degrees) from the ESA archive.

    ``mag`` is Gaia G (Vega), so the zero-point difference includes a colour term.

    Raises
    ------
    ReferenceUnavailable
        astroquery is not installed, or the archive cannot be reached (no network).
    """
    try:
        # importing prints the archive's status (or that it is unreachable): keep it off our output
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            from astroquery.gaia import Gaia
    except ImportError as exc:
        raise ReferenceUnavailable("--gaia needs astroquery: pip install 'astroquery>=0.4.7'") from exc
    Gaia.ROW_LIMIT = row_limit
    frames = []
    for ra, dec, radius in cones:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                job = Gaia.cone_search_async(SkyCoord(ra * u.deg, dec * u.deg), radius=radius * u.deg,
                                             columns=["source_id", "ra", "dec", "phot_g_mean_mag"])
                frames.append(job.get_results().to_pandas())
        except Exception as exc:  # astroquery surfaces requests, HTTP and socket errors of many types
            raise ReferenceUnavailable(
                f"cannot query the Gaia archive around RA {ra:.4f}, Dec {dec:+.4f} ({type(exc).__name__}: {exc}); "
                "without network access use --reference FILE"
            ) from exc
    if not frames:
        raise NothingToMatch("no image footprint to fetch Gaia sources for")
    frame = pd.concat(frames, ignore_index=True)
    frame.columns = [c.lower() for c in frame.columns]
    return Reference.from_frame(frame.drop_duplicates("source_id"), "gaia_dr3", "phot_g_mean_mag")


def pair_up(src_ra: np.ndarray, src_dec: np.ndarray, ref_ra: np.ndarray, ref_dec: np.ndarray,
            radius_arcsec: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one pairs closer than ``radius_arcsec``, closest first.

    Returns
    -------
    src_index, ref_index : ndarray of int
        Matched rows.
    sep_arcsec : ndarray
        Their separations, arcsec.
    n_candidates : ndarray of int
        For each pair, how many reference objects lay within the radius of the source.
    """
    empty = np.zeros(0, dtype=np.int64)
    if len(src_ra) == 0 or len(ref_ra) == 0:
        return empty, empty, np.zeros(0), empty
    src = SkyCoord(src_ra * u.deg, src_dec * u.deg)
    ref = SkyCoord(ref_ra * u.deg, ref_dec * u.deg)
    i_src, i_ref, sep, _ = search_around_sky(src, ref, radius_arcsec * u.arcsec)
    sep_arcsec = sep.to_value(u.arcsec)
    candidates = np.bincount(i_src, minlength=len(src_ra))
    order = np.argsort(sep_arcsec, kind="stable")
    used_src, used_ref, keep = set(), set(), []
    for k in order:
        s, r = int(i_src[k]), int(i_ref[k])
        if s not in used_src and r not in used_ref:
            used_src.add(s)
            used_ref.add(r)
            keep.append(k)
    keep = np.asarray(keep, dtype=np.int64)
    return i_src[keep], i_ref[keep], sep_arcsec[keep], candidates[i_src[keep]]


def robust_sigma(values: np.ndarray) -> float | None:
    """1.4826 x median absolute deviation (a normal sample's sigma, astropy's ``mad_std``) of the
    finite values, None when there are none."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    return float(mad_std(values))


def _median(values: np.ndarray) -> float | None:
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else None


@dataclass
class CrossmatchReport:
    """Astrometric and photometric comparison with the reference (arcsec and mag).

    ``matched_fraction`` is the fraction of reference objects lying inside an image
    (per image, so an object seen twice counts twice) that found a source.
    """

    reference: str
    radius_arcsec: float
    n_images: int = 0
    n_reference_inside: int = 0
    n_matched_inside: int = 0
    n_matched: int = 0
    dra_median_arcsec: float | None = None
    ddec_median_arcsec: float | None = None
    dra_sigma_arcsec: float | None = None
    ddec_sigma_arcsec: float | None = None
    sep_median_arcsec: float | None = None
    dmag_median: float | None = None
    dmag_sigma: float | None = None
    n_dmag: int = 0
    per_image: list[dict] = field(default_factory=list)

    @property
    def matched_fraction(self) -> float | None:
        return self.n_matched_inside / self.n_reference_inside if self.n_reference_inside else None

    def to_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "per_image"}
        out["matched_fraction"] = self.matched_fraction
        return out


def _inside(image: ImageRecord, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Which positions fall on the image's pixels (through its stored WCS)."""
    if not image.wcs_header or len(ra) == 0:
        return np.zeros(len(ra), dtype=bool)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wcs = WCS(fits.Header.fromstring(image.wcs_header, sep="\n"), relax=True)
    x, y = sky_to_pixel(wcs, ra, dec)
    return (x >= 0) & (y >= 0) & (x <= image.nx - 1) & (y <= image.ny - 1)


def _match_rows(image: ImageRecord, sources: pd.DataFrame, ref: Reference, rows: np.ndarray, radius_arcsec: float,
                when: datetime) -> pa.Table:
    i_src, i_ref, sep, n_cand = pair_up(sources["ra"].to_numpy(float), sources["dec"].to_numpy(float),
                                        ref.ra[rows], ref.dec[rows], radius_arcsec)
    s, r = sources.iloc[i_src], rows[i_ref]
    dec_rad = np.deg2rad(ref.dec[r])
    dra = (((s["ra"].to_numpy(float) - ref.ra[r]) + 180.0) % 360.0 - 180.0) * np.cos(dec_rad) * 3600.0
    mag = s["mag_ab"].to_numpy(float)
    data = {
        "image_id": np.full(len(r), image.image_id, dtype=object), "source_id": s["source_id"].to_numpy(object),
        "ref_id": ref.ref_id[r], "reference": np.full(len(r), ref.name, dtype=object),
        "ra": s["ra"].to_numpy(float), "dec": s["dec"].to_numpy(float), "ref_ra": ref.ra[r], "ref_dec": ref.dec[r],
        "sep_arcsec": sep, "dra_arcsec": dra, "ddec_arcsec": (s["dec"].to_numpy(float) - ref.dec[r]) * 3600.0,
        "n_candidates": n_cand.astype(np.int32), "mag_ab": mag, "ref_mag": ref.mag[r], "dmag": mag - ref.mag[r],
        "snr": s["snr"].to_numpy(float), "star_score": s["star_score"].to_numpy(float),
        "flags": s["flags"].to_numpy(np.int32), "radius_arcsec": np.full(len(r), radius_arcsec),
        "matched_at": [when] * len(r),
    }
    arrays = [pa.array(data[f.name], type=f.type, from_pandas=True) for f in MATCHES_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=MATCHES_SCHEMA)


def crossmatch(home: str | os.PathLike[str], reference: Reference, *, radius_arcsec: float = 1.0,
               min_snr_zp: float = 20.0, image_ids: Iterable[str] | None = None) -> CrossmatchReport:
    """Match every measured image's sources to ``reference``; write the ``matches`` table.

    Parameters
    ----------
    home : path
        skysift home holding the ``sources`` and ``images`` tables.
    reference : Reference
        The reference catalog (:func:`read_reference` or :func:`fetch_gaia`).
    radius_arcsec : float
        Match radius, arcsec.
    min_snr_zp : float
        Only sources at least this significant enter the zero-point statistics.
    image_ids : iterable of str, optional
        Restrict to these images (default: every image with status ``ok``).

    Returns
    -------
    CrossmatchReport
        Offsets in arcsec (source minus reference) and ``mag_ab - ref_mag`` in mag.

    Raises
    ------
    NothingToMatch
        No measured image in the tables.
    """
    if radius_arcsec <= 0:
        raise CrossmatchError(f"the match radius must be positive, got {radius_arcsec} arcsec")
    catalog = analysis_catalog(home)
    # an image whose WCS is not trusted has no sky positions to match (center_ra null)
    images = sorted((r for r in LocalTables(home).images() if r.status is ImageStatus.OK and r.center_ra is not None),
                    key=lambda r: (r.obs_time is None, r.obs_time or datetime.min.replace(tzinfo=UTC),
                                   r.uri is None, r.uri or ""))
    if image_ids is not None:
        wanted = set(image_ids)
        images = [row for row in images if row.image_id in wanted]
    if not images:
        raise NothingToMatch(f"no measured image in {home}: run `skysift run` first")
    report = CrossmatchReport(reference=reference.name, radius_arcsec=radius_arcsec, n_images=len(images))
    when = datetime.now(UTC)
    tables = []
    for image in images:
        sources = catalog.sql("SELECT source_id, ra, dec, mag_ab, snr, star_score, flags FROM sources "
                              "WHERE image_id = $id", {"id": image.image_id})
        rows = reference.around(image.center_ra, image.center_dec,
                                image.radius_deg + 2 * radius_arcsec / 3600.0)
        table = _match_rows(image, sources, reference, rows, radius_arcsec, when)
        write_rows(home, "matches", image, table)
        tables.append(table)
        inside = rows[_inside(image, reference.ra[rows], reference.dec[rows])]
        matched_inside = int(np.isin(table["ref_id"].to_numpy(zero_copy_only=False), reference.ref_id[inside]).sum())
        report.n_reference_inside += len(inside)
        report.n_matched_inside += matched_inside
        report.per_image.append({
            "image_id": image.image_id, "uri": image.uri, "n_sources": len(sources),
            "n_reference_inside": len(inside), "n_matched": table.num_rows,
            "matched_fraction": matched_inside / len(inside) if len(inside) else None,
            "dra_median_arcsec": _median(table["dra_arcsec"].to_numpy()),
            "ddec_median_arcsec": _median(table["ddec_arcsec"].to_numpy()),
            "dmag_median": _median(table["dmag"].to_numpy(zero_copy_only=False)),
        })
    _summarize(report, pa.concat_tables(tables), min_snr_zp)
    log.info("cross-matched %d images: %d pairs", len(images), report.n_matched)
    return report


def _summarize(report: CrossmatchReport, matches: pa.Table, min_snr_zp: float) -> None:
    dra, ddec = matches["dra_arcsec"].to_numpy(), matches["ddec_arcsec"].to_numpy()
    report.n_matched = matches.num_rows
    report.dra_median_arcsec, report.ddec_median_arcsec = _median(dra), _median(ddec)
    report.dra_sigma_arcsec, report.ddec_sigma_arcsec = robust_sigma(dra), robust_sigma(ddec)
    report.sep_median_arcsec = _median(matches["sep_arcsec"].to_numpy())
    dmag = matches["dmag"].to_numpy(zero_copy_only=False).astype(float)
    snr = matches["snr"].to_numpy(zero_copy_only=False).astype(float)
    dmag = dmag[np.isfinite(dmag) & (snr >= min_snr_zp)]
    report.n_dmag = int(dmag.size)
    report.dmag_median, report.dmag_sigma = _median(dmag), robust_sigma(dmag)
