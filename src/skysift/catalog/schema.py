"""Table schemas of ``sources``, ``images`` and ``alerts``, with units.

The same schemas are written locally (Hive-partitioned Parquet read by DuckDB) and
to AWS (Glue tables read by Athena). Each field carries ``unit`` and ``description``
metadata; the partition keys are not stored in the files but in the paths.

Partition keys, the same for all three tables: ``survey`` / ``band`` / ``obs_night``
(UTC date of the observation). Queries almost always restrict one survey, one band
or a range of nights, so Athena prunes to a few prefixes; one night of one band is
a natural unit of re-processing; and the number of partitions grows by one per band
per night, far below Athena's per-query partition limits.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = [
    "ALERTS_SCHEMA",
    "IMAGES_SCHEMA",
    "PARTITION_KEYS",
    "TIMESTAMP",
    "schema_for",
    "sources_schema",
    "units",
]

PARTITION_KEYS = ("survey", "band", "obs_night")
TIMESTAMP = pa.timestamp("us", tz="UTC")


def _field(name: str, type_: pa.DataType, unit: str = "", description: str = "", nullable: bool = True) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"unit": unit, "description": description})


def sources_schema(n_apertures: int = 3) -> pa.Schema:
    """Schema of the ``sources`` table (one row per detection)."""
    fields = [
        _field("image_id", pa.string(), "", "image this detection belongs to", False),
        _field("source_id", pa.string(), "", "image_id:source_num, unique", False),
        _field("source_num", pa.int32(), "", "detection number within the image, from 0"),
        _field("obs_time", TIMESTAMP, "UTC", "start of the exposure"),
        _field("x", pa.float64(), "pix", "windowed centroid, 0-based column"),
        _field("y", pa.float64(), "pix", "windowed centroid, 0-based row"),
        _field("x_err", pa.float32(), "pix", "1-sigma error of x"),
        _field("y_err", pa.float32(), "pix", "1-sigma error of y"),
        _field("ra", pa.float64(), "deg", "right ascension, ICRS; null without a trusted celestial WCS (see images.wcs_status)"),
        _field("dec", pa.float64(), "deg", "declination, ICRS; null without a trusted celestial WCS (see images.wcs_status)"),
        _field("pos_err_arcsec", pa.float32(), "arcsec", "1-sigma position error"),
        _field("a", pa.float32(), "pix", "semi-major axis (second moments)"),
        _field("b", pa.float32(), "pix", "semi-minor axis (second moments)"),
        _field("theta", pa.float32(), "rad", "position angle of a, from +x towards +y"),
        _field("ellipticity", pa.float32(), "", "1 - b/a"),
        _field("kron_radius", pa.float32(), "", "Kron radius in units of a and b"),
        _field("half_light_radius_px", pa.float32(), "pix", "radius enclosing half the Kron flux"),
        _field("fwhm_px", pa.float32(), "pix", "2 x half-light radius (exact for a Gaussian)"),
        _field("fwhm_arcsec", pa.float32(), "arcsec", "fwhm_px times the pixel scale"),
        _field("peak", pa.float32(), "count", "peak pixel above background"),
        _field("npix", pa.int32(), "pix", "pixels above threshold"),
        _field("flux", pa.float64(), "count", "Kron (AUTO) flux above background"),
        _field("flux_err", pa.float64(), "count", "1-sigma error of flux"),
    ]
    for k in range(1, n_apertures + 1):
        fields += [
            _field(f"flux_aper_{k}", pa.float64(), "count", f"flux in circular aperture {k} (radii in images.aperture_radii_px)"),
            _field(f"flux_aper_{k}_err", pa.float64(), "count", f"1-sigma error of flux_aper_{k}"),
        ]
    fields += [
        _field("flux_ujy", pa.float64(), "uJy", "calibrated Kron flux; null without a zero point"),
        _field("flux_ujy_err", pa.float64(), "uJy", "1-sigma error of flux_ujy"),
        _field("mag_ab", pa.float32(), "mag", "AB magnitude of the Kron flux; null without a zero point"),
        _field("mag_ab_err", pa.float32(), "mag", "1-sigma error of mag_ab"),
        _field("snr", pa.float32(), "", "flux / flux_err"),
        _field("flags", pa.int32(), "", "bit flags, see skysift.core.flags"),
        _field("star_score", pa.float32(), "", "1 point source ... 0 extended; null if undetermined"),
        _field("healpix", pa.int64(), "", "nested HEALPix index at order 16 (nside 65536)"),
    ]
    return pa.schema(fields, metadata={"table": "sources", "partition_keys": ",".join(PARTITION_KEYS)})


IMAGES_SCHEMA = pa.schema(
    [
        _field("image_id", pa.string(), "", "hash of (location, content fingerprint, HDU unless the file's first image HDU)", False),
        _field("uri", pa.string(), "", "local path or s3://bucket/key"),
        _field("content_hash", pa.string(), "", "sha256:... of the file, or etag:... of the S3 object"),
        _field("hdu", pa.int32(), "", "index of the HDU processed (each image HDU of a file is an image of its own)"),
        _field("hdu_name", pa.string()),
        _field("nx", pa.int32(), "pix"),
        _field("ny", pa.int32(), "pix"),
        _field("bytes", pa.int64(), "byte", "size of the (decompressed) file"),
        _field("bitpix", pa.int32()),
        _field("compressed", pa.bool_(), "", "tile-compressed HDU"),
        _field("wcs_kind", pa.string(), "", "celestial | helioprojective | none"),
        _field("checksum_status", pa.string(), "", "CHECKSUM/DATASUM: ok | bad | absent | unverified (not all pixels read)"),
        _field("telescope", pa.string()),
        _field("instrument", pa.string()),
        _field("wavelength_angstrom", pa.float64(), "Angstrom"),
        _field("obs_time", TIMESTAMP, "UTC", "start of the exposure"),
        _field("exptime_s", pa.float64(), "s"),
        _field("status", pa.string(), "", "ok | indexed (not source-extracted) | failed"),
        _field("route", pa.string(), "", "local | small | large | index_only"),
        _field("error_reason", pa.string(), "", "stable reason code when status = failed"),
        _field("error_message", pa.string()),
        _field("n_sources", pa.int32()),
        _field("background_level", pa.float64(), "count", "global sky level"),
        _field("background_rms", pa.float64(), "count", "global sky noise per pixel"),
        _field("pixel_scale_arcsec", pa.float64(), "arcsec/pix"),
        _field("seeing_fwhm_px", pa.float64(), "pix", "median FWHM of stars"),
        _field("seeing_fwhm_arcsec", pa.float64(), "arcsec"),
        _field("zero_point_ab", pa.float64(), "mag", "AB magnitude of one count"),
        _field("zero_point_source", pa.string(), "", "header keyword the zero point came from"),
        _field("limit_flux_5sigma", pa.float64(), "count", "5-sigma point-source flux in an aperture of radius FWHM"),
        _field("limit_mag_5sigma", pa.float64(), "mag", "AB magnitude of limit_flux_5sigma"),
        _field("completeness_mag50", pa.float64(), "mag", "50% completeness from injected stars (skysift completeness)"),
        _field("completeness_mag90", pa.float64(), "mag", "90% completeness from injected stars (skysift completeness)"),
        _field("center_ra", pa.float64(), "deg"),
        _field("center_dec", pa.float64(), "deg"),
        _field("radius_deg", pa.float64(), "deg", "centre to farthest corner"),
        _field("corners_ra", pa.list_(pa.float64()), "deg", "footprint corners"),
        _field("corners_dec", pa.list_(pa.float64()), "deg"),
        _field("wcs_header", pa.string(), "", "the WCS as FITS header cards"),
        _field("wcs_status", pa.string(), "", "valid | wcs_invalid (ra/dec null, see wcs_message) | none (no celestial WCS)"),
        _field("wcs_message", pa.string(), "", "why the celestial WCS is not trusted"),
        _field("detection_threshold_sigma", pa.float64(), "", "threshold actually used"),
        _field("noise_correlation_factor", pa.float64(), "",
               "filtered sky noise / its white-noise expectation; the threshold is scaled by it (1 for white noise)"),
        _field("crowded", pa.bool_(), "", "SEP overflowed and the threshold was raised"),
        _field("filter_fwhm_px", pa.float64(), "pix",
               "FWHM of the detection filter: the setting, else the header's seeing (SEEING, FWHM, PSF_FWHM), else 3"),
        _field("aperture_radii_px", pa.list_(pa.float64()), "pix"),
        _field("read_s", pa.float64(), "s", "wall time"),
        _field("background_s", pa.float64(), "s", "wall time"),
        _field("detect_s", pa.float64(), "s", "CPU time, summed over strip or tile processes"),
        _field("measure_s", pa.float64(), "s", "CPU time, summed over strip or tile processes"),
        _field("total_s", pa.float64(), "s", "wall time, read to catalog"),
        _field("processed_at", TIMESTAMP, "UTC"),
        _field("software_version", pa.string()),
        _field("settings_hash", pa.string(), "",
               "hash of the measurement settings (Settings.measurement_hash); a run redoes images measured with others"),
    ],
    metadata={"table": "images", "partition_keys": ",".join(PARTITION_KEYS)},
)

ALERTS_SCHEMA = pa.schema(
    [
        _field("alert_id", pa.string(), "", "hash of (image_id, source_id, rule)", False),
        _field("rule", pa.string(), "", "high_snr | high_flux | new_source"),
        _field("image_id", pa.string()),
        _field("source_id", pa.string()),
        _field("obs_time", TIMESTAMP, "UTC"),
        _field("ra", pa.float64(), "deg"),
        _field("dec", pa.float64(), "deg"),
        _field("x", pa.float64(), "pix"),
        _field("y", pa.float64(), "pix"),
        _field("flux", pa.float64(), "count"),
        _field("snr", pa.float32()),
        _field("mag_ab", pa.float32(), "mag"),
        _field("star_score", pa.float32()),
        _field("image_uri", pa.string()),
        _field("cutout_uri", pa.string(), "", "small FITS cutout around the source"),
        _field("detail", pa.string(), "", "why the rule fired"),
        _field("created_at", TIMESTAMP, "UTC"),
    ],
    metadata={"table": "alerts", "partition_keys": ",".join(PARTITION_KEYS)},
)


def schema_for(table: str, n_apertures: int = 3) -> pa.Schema:
    """The schema of ``sources``, ``images`` or ``alerts``."""
    if table == "sources":
        return sources_schema(n_apertures)
    return {"images": IMAGES_SCHEMA, "alerts": ALERTS_SCHEMA}[table]


def units(schema: pa.Schema) -> dict[str, str]:
    """Column name to unit, for documentation and query output."""
    return {f.name: (f.metadata or {}).get(b"unit", b"").decode() for f in schema}
