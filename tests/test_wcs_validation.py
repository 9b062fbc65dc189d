"""Never silently wrong coordinates: a WCS astropy only half-parses gives null RA/Dec.

Every broken header below is written into a real synthetic image and run through
``skysift run`` (one run over one directory: a subprocess, as a user would). The image
is still measured (status ok, sources with pixel positions and fluxes), its sources
have null RA/Dec and the ``wcs_invalid`` flag, and the ``images`` row says why (an image
without celestial axes gets a pixel catalog, RA/Dec null, without the flag).
Valid headers are checked against an *independent* transform: a gnomonic projection
written here with numpy, and astropy's own WCS built from the file.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pyarrow.parquet as pq
import pytest
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning
from astropy.wcs import WCS, FITSFixedWarning

from skysift.analysis.synthetic import SkySpec, random_sources, render, write_fits
from skysift.core import astrometry
from skysift.core import flags as F
from skysift.core.astrometry import WcsStatus, read_wcs, validate_celestial_wcs
from skysift.io.fits import build_wcs, celestial_wcs, kind_of_wcs, read_image, wcs_kind
from skysift.measure.frame import finish_catalog, measure_pixels
from skysift.pipeline.image import process_image
from skysift.settings import Settings

SIZE = 256
SKYSIFT = str(Path(sys.executable).with_name("skysift"))
#: Agreement of sky positions with the independent transform, degrees.
TOLERANCE_DEG = 1e-6


# -- building the images -----------------------------------------------------------------------
def sky_header(*, sip: bool = False, seed: int = 1, date: str = "2026-01-01T00:00:00"):
    """A rendered 256x256 sky (data, header) with a TAN (or TAN-SIP) WCS in PC/CDELT form."""
    rng = np.random.default_rng(seed)
    spec = SkySpec(nx=SIZE, ny=SIZE, sip=sip, pixel_scale_arcsec=0.4, rotation_deg=20.0)
    stars, galaxies = random_sources(spec, 60, 10, rng, margin_px=10)
    sky = render(spec, stars, galaxies, rng, {"DATE-OBS": date, "FILTER": "r", "SURVEY": "wcs"})
    del sky.header["MJDREF"]  # as in most real headers: astropy's datfix then sets MJD-OBS from DATE-OBS
    return sky


def cd_form(header: fits.Header) -> fits.Header:
    """The same WCS written with a CD matrix instead of PC and CDELT."""
    header = header.copy()
    matrix = linear_matrix(header)
    for key in ("PC1_1", "PC1_2", "PC2_1", "PC2_2", "CDELT1", "CDELT2"):
        header.remove(key, ignore_missing=True)
    for i in range(2):
        for j in range(2):
            header[f"CD{i + 1}_{j + 1}"] = float(matrix[i, j])
    return header


def write(path: Path, sky, header: fits.Header, raw: dict[str, str] | None = None) -> Path:
    """Write the sky with ``header``; ``raw`` cards (KEY -> value text, e.g. 'NaN') are patched
    into the file's bytes, as a broken writer would leave them (astropy refuses to write them)."""
    write_fits(path, replace(sky, header=header))
    if raw:
        content = bytearray(path.read_bytes())
        for key, text in raw.items():
            start = _card_offset(content, key)
            content[start:start + 80] = f"{key:<8}= {text:>20}".ljust(80).encode()
        path.write_bytes(bytes(content))
    return path


def _card_offset(content: bytearray, key: str) -> int:
    for start in range(0, 2880 * 4, 80):
        if content[start:start + 8].decode().rstrip() == key:
            return start
    raise KeyError(key)


def _edit(**changes):
    def apply(header: fits.Header) -> fits.Header:
        header = header.copy()
        for key, value in changes.items():
            if value is None:
                header.remove(key, ignore_missing=True)
            else:
                header[key] = value
        return header
    return apply


def _scaled(factor: float):
    """The pixel scale multiplied by ``factor`` (the file's 0.4"/pixel is in PC, CDELT = 1)."""
    return lambda header: _edit(CDELT1=header["CDELT1"] * factor, CDELT2=header["CDELT2"] * factor)(header)


def _singular(header: fits.Header) -> fits.Header:
    header = cd_form(header)
    header["CD2_1"], header["CD2_2"] = header["CD1_1"] * 2.0, header["CD1_2"] * 2.0  # rows proportional
    return header


def _pc_singular(header: fits.Header) -> fits.Header:
    header = header.copy()
    header["PC1_1"], header["PC1_2"], header["PC2_1"], header["PC2_2"] = 0.6, 0.8, 0.6, 0.8
    return header


#: name -> (header edit, raw cards, SIP?, words the reason must contain)
BROKEN = {
    "crval_string": (_edit(CRVAL1="150.1"), None, False, "CRVAL1"),
    "crval_nan": (None, {"CRVAL1": "NaN"}, False, "CRVAL1"),
    "crval_infinite": (None, {"CRVAL2": "1E400"}, False, "CRVAL2"),
    "crpix_string": (_edit(CRPIX2="centre"), None, False, "CRPIX2"),
    "cdelt_nan": (None, {"CDELT1": "NAN"}, False, "CDELT1"),
    "pc_nan": (None, {"PC1_2": "nan"}, False, "PC1_2"),
    "cd_string": (lambda h: _edit(CD1_1="-1.1e-4")(cd_form(h)), None, False, "CD1_1"),
    "cd_singular": (_singular, None, False, "singular"),
    "pc_singular": (_pc_singular, None, False, "singular"),
    "cd_and_pc_disagree": (lambda h: _edit(CD1_1=-2e-4, CD1_2=0.0, CD2_1=0.0, CD2_2=2e-4)(h), None, False, "ambiguous"),
    "cd_missing_an_axis": (lambda h: _edit(CD2_1=None, CD2_2=None)(cd_form(h)), None, False, "singular"),
    "unknown_projection": (_edit(CTYPE1="RA---XYZ", CTYPE2="DEC--XYZ"), None, False, "projection"),
    "no_projection": (_edit(CTYPE1="RA", CTYPE2="DEC"), None, False, "projection"),
    "aips_projection_celfix": (_edit(CTYPE1="RA---NCP", CTYPE2="DEC--NCP"), None, False, "celfix"),
    "units_not_degrees": (_edit(CUNIT1="arcsec", CUNIT2="arcsec"), None, False, "CUNIT1"),
    "no_pixel_scale": (_edit(CDELT1=None, CDELT2=None), None, False, "pixel scale"),
    "scale_too_coarse": (_scaled(2 * 3600 / 0.4), None, False, "implausible"),  # 2 degrees per pixel
    "scale_too_fine": (_scaled(1e-7), None, False, "implausible"),
    "projection_off_the_sphere": (lambda h: _edit(CTYPE1="RA---SIN", CTYPE2="DEC--SIN")(_scaled(0.5 * 3600 / 0.4)(h)),
                                  None, False, "no sky position"),  # half a degree per pixel: beyond the horizon
    "no_reference_value": (_edit(CRVAL1=None), None, False, "CRVAL1"),
    "unknown_frame": (_edit(RADESYS="GALACTICISH"), None, False, "frame"),
    "sip_without_sip_ctype": (_edit(CTYPE1="RA---TAN", CTYPE2="DEC--TAN"), None, True, "SIP"),
    "sip_not_invertible": (_edit(A_2_0=1.0), None, True, "invert"),
}


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    """Every broken image, two valid ones and a no-WCS one, run once through `skysift run`."""
    folder = tmp_path_factory.mktemp("wcs_skies")
    home = tmp_path_factory.mktemp("wcs_home") / "home"
    plain, with_sip = sky_header(), sky_header(sip=True)
    files = {}
    for name, (edit, raw, sip, _) in BROKEN.items():
        sky = with_sip if sip else plain
        files[name] = write(folder / f"{name}.fits", sky, edit(sky.header) if edit else sky.header, raw)
    files["valid_tan"] = write(folder / "valid_tan.fits", plain, plain.header)
    files["valid_tan_cd_deg"] = write(folder / "valid_tan_cd_deg.fits", plain,
                                      _edit(CUNIT1="DEG", CUNIT2="degrees")(cd_form(plain.header)))
    files["valid_sip"] = write(folder / "valid_sip.fits", with_sip, with_sip.header)
    bare = fits.Header([(k, v) for k, v in plain.header.items() if not k.startswith(("CTYPE", "CRVAL", "CUNIT"))])
    files["no_wcs"] = write(folder / "no_wcs.fits", plain, bare)
    # the same stars a day later, behind a header that shifts them by 51": before, every
    # one of them was a plausible 'new source'
    later = sky_header(date="2026-01-02T00:00:00")
    files["later_shifted"] = write(folder / "later_shifted.fits", later, _edit(CRPIX1="128.5")(later.header))
    done = subprocess.run([SKYSIFT, "--home", str(home), "run", str(folder), "-j", "1", "--new-radius", "2"],
                          capture_output=True, text=True, timeout=600)
    assert "Traceback" not in done.stderr, done.stderr
    images = {Path(r["uri"]).stem: r for r in _rows(home, "images")}
    sources = _rows(home, "sources")
    by_image: dict[str, list[dict]] = {}
    for row in sources:
        by_image.setdefault(row["image_id"], []).append(row)
    return {"home": home, "files": files, "images": images,
            "sources": {name: by_image.get(row["image_id"], []) for name, row in images.items()}}


def _rows(home: Path, table: str) -> list[dict]:
    files = sorted((home / "tables" / table).glob("*/*/*/*.parquet"))
    return [row for path in files for row in pq.read_table(path).to_pylist()]


# -- broken headers: measured, null sky positions, flagged, reason recorded ---------------------
@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_wcs_leaves_sky_positions_null_and_says_why(survey, case):
    row, sources = survey["images"][case], survey["sources"][case]
    assert row["status"] == "ok" and row["wcs_kind"] == "celestial"
    assert row["n_sources"] > 0 and len(sources) == row["n_sources"]
    assert row["wcs_status"] == "wcs_invalid"
    assert BROKEN[case][3].lower() in row["wcs_message"].lower(), row["wcs_message"]
    assert all(s["ra"] is None and s["dec"] is None and s["healpix"] is None for s in sources)
    assert all(s["pos_err_arcsec"] is None and s["fwhm_arcsec"] is None for s in sources)
    assert all(s["flags"] & F.WCS_INVALID for s in sources)
    # pixel positions and fluxes are measured all the same
    assert all(np.isfinite(s["x"]) and np.isfinite(s["y"]) and np.isfinite(s["flux"]) for s in sources)
    # nothing derived from the untrusted WCS is recorded for the image
    assert row["center_ra"] is None and row["corners_ra"] is None and row["pixel_scale_arcsec"] is None
    assert row["wcs_header"] is None


def test_pixel_measurements_do_not_depend_on_the_wcs(survey):
    valid, broken = survey["sources"]["valid_tan"], survey["sources"]["crval_string"]
    assert [(s["x"], s["y"], s["flux"]) for s in valid] == [(s["x"], s["y"], s["flux"]) for s in broken]


def test_an_image_without_any_wcs_gets_a_pixel_catalog_without_the_wcs_invalid_flag(survey):
    row, sources = survey["images"]["no_wcs"], survey["sources"]["no_wcs"]
    assert (row["status"], row["wcs_kind"], row["wcs_status"]) == ("ok", "none", "none")
    assert len(sources) == row["n_sources"] > 0 and all(s["ra"] is None and s["dec"] is None for s in sources)
    assert not any(s["flags"] & F.WCS_INVALID for s in sources)  # no sky position meant, none withheld
    valid = survey["sources"]["valid_tan"]
    assert [(s["x"], s["y"], s["flux"]) for s in sources] == [(s["x"], s["y"], s["flux"]) for s in valid]


# -- valid headers: agree with an independent transform -----------------------------------------
def linear_matrix(header: fits.Header) -> np.ndarray:
    """Degrees per pixel: the CD matrix, or PC scaled by CDELT (FITS WCS paper I), from the header's values."""
    if any(f"CD{i}_{j}" in header for i in (1, 2) for j in (1, 2)):
        return np.array([[header.get(f"CD{i}_{j}", 0.0) for j in (1, 2)] for i in (1, 2)], dtype=float)
    pc = np.array([[header.get(f"PC{i}_{j}", float(i == j)) for j in (1, 2)] for i in (1, 2)], dtype=float)
    return pc * np.array([[header["CDELT1"]], [header["CDELT2"]]], dtype=float)


def gnomonic(header: fits.Header, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RA/Dec (deg) of 0-based pixels through a TAN projection computed here from the header's
    CRVAL, CRPIX and CD (or PC x CDELT) and LONPOLE (FITS WCS papers I and II), no astropy."""
    matrix = linear_matrix(header)
    offsets = np.vstack([np.asarray(x, float) + 1.0 - header["CRPIX1"], np.asarray(y, float) + 1.0 - header["CRPIX2"]])
    ix, iy = np.deg2rad(matrix @ offsets)  # intermediate world coordinates, radians
    phi = np.arctan2(ix, -iy)  # native longitude
    theta = np.arctan2(1.0, np.hypot(ix, iy))  # native latitude, TAN
    ra0, dec0 = np.deg2rad(header["CRVAL1"]), np.deg2rad(header["CRVAL2"])
    phi_p = np.deg2rad(header.get("LONPOLE", 180.0))
    dphi = phi - phi_p
    ra = ra0 + np.arctan2(-np.cos(theta) * np.sin(dphi),
                          np.sin(theta) * np.cos(dec0) - np.cos(theta) * np.sin(dec0) * np.cos(dphi))
    dec = np.arcsin(np.sin(theta) * np.sin(dec0) + np.cos(theta) * np.cos(dec0) * np.cos(dphi))
    return np.mod(np.rad2deg(ra), 360.0), np.rad2deg(dec)


def separation_deg(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Great-circle distance (deg) by the haversine formula, precise for tiny angles."""
    ra1, dec1, ra2, dec2 = (np.deg2rad(np.asarray(v, float)) for v in (ra1, dec1, ra2, dec2))
    h = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.rad2deg(2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))))


@pytest.mark.parametrize("case", ["valid_tan", "valid_tan_cd_deg"])
def test_valid_tan_positions_agree_with_a_hand_written_gnomonic_projection(survey, case):
    row, sources = survey["images"][case], survey["sources"][case]
    assert (row["status"], row["wcs_status"], row["wcs_message"]) == ("ok", "valid", None)
    assert len(sources) > 20 and not any(s["flags"] & F.WCS_INVALID for s in sources)
    header = fits.getheader(survey["files"][case])
    ra, dec = gnomonic(header, [s["x"] for s in sources], [s["y"] for s in sources])
    assert separation_deg(ra, dec, [s["ra"] for s in sources], [s["dec"] for s in sources]).max() < TOLERANCE_DEG
    assert abs(row["center_ra"] - header["CRVAL1"]) < 0.01 and abs(row["center_dec"] - header["CRVAL2"]) < 0.01


def test_valid_sip_positions_agree_with_astropy_reading_the_file_itself(survey):
    row, sources = survey["images"]["valid_sip"], survey["sources"]["valid_sip"]
    assert (row["status"], row["wcs_status"]) == ("ok", "valid")
    with fits.open(survey["files"]["valid_sip"]) as hdul, warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)  # datfix: MJD-OBS from DATE-OBS
        ra, dec = WCS(hdul[0].header).all_pix2world([s["x"] for s in sources], [s["y"] for s in sources], 0)
    assert separation_deg(ra, dec, [s["ra"] for s in sources], [s["dec"] for s in sources]).max() < TOLERANCE_DEG


# -- alerts cope with sources that have no sky position -----------------------------------------
def test_sources_without_sky_positions_raise_no_new_source_alert(survey):
    alerts = subprocess.run([SKYSIFT, "--home", str(survey["home"]), "alerts", "--json", "--limit", "1000"],
                            capture_output=True, text=True, timeout=120, check=True).stdout.splitlines()
    shifted = survey["images"]["later_shifted"]
    assert shifted["wcs_status"] == "wcs_invalid" and "CRPIX1" in shifted["wcs_message"]
    mine = [json.loads(line) for line in alerts if json.loads(line)["image_id"] == shifted["image_id"]]
    assert not [a for a in mine if a["rule"] == "new_source"]
    assert all(a["ra"] is None and a["dec"] is None for a in mine)
    shown = subprocess.run([SKYSIFT, "--home", str(survey["home"]), "alerts", "--limit", "1000"],
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and "Traceback" not in shown.stderr


# -- the large (tiled) path judges the WCS the same way ----------------------------------------
def test_the_tiled_path_also_leaves_a_broken_wcs_null(survey, tmp_path):
    settings = Settings.load(home=tmp_path / "home")
    whole = survey["images"]["crval_string"]
    tiled = process_image(str(survey["files"]["crval_string"]), settings, route="large").record.to_row()
    assert (tiled["route"], tiled["status"], tiled["wcs_status"]) == ("large", "ok", "wcs_invalid")
    assert tiled["wcs_message"] == whole["wcs_message"] and tiled["n_sources"] == whole["n_sources"]
    assert tiled["center_ra"] is None


def test_the_plausible_pixel_scale_is_a_setting(survey, tmp_path):
    strict = Settings.load(home=tmp_path / "home", wcs__max_pixel_scale_arcsec=0.1)
    row = process_image(str(survey["files"]["valid_tan"]), strict).record.to_row()
    assert row["wcs_status"] == "wcs_invalid" and "0.4 arcsec/pixel" in row["wcs_message"]


# -- which of astropy's fixes are harmless -----------------------------------------------------
def test_datfix_is_harmless_but_celfix_is_not():
    header = sky_header().header
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        WCS(header)
    assert any("datfix" in str(w.message) for w in caught)  # DATE-OBS without MJD-OBS: datfix runs
    assert read_wcs(header).problems == ()
    ncp = _edit(CTYPE1="RA---NCP", CTYPE2="DEC--NCP")(header)
    assert any("celfix" in p for p in read_wcs(ncp).problems)


@pytest.mark.parametrize(("text", "harmless"), [
    ("'datfix' made the change 'Set MJD-OBS to 61041.000000 from DATE-OBS'.", True),
    ("'obsfix' made the change 'Set OBSGEO-L to -70.0 from OBSGEO-[XYZ]'.", True),
    ("'spcfix' made the change 'Changed CTYPE3 from 'FREQ-LSR' to 'FREQ''.", True),
    ("'unitfix' made the change 'Changed units:\n  'ARCSEC' -> 'arcsec''.", False),
    ("'celfix' made the change 'Success'.", False),
    ("'cylfix' made the change 'Success'.", False),
    ("'cdfix' made the change 'Success'.", False),
    ("Removed redundant SCAMP distortion parameters because SIP parameters are also present", True),
    ("MJD-OBS = 'x'\na floating-point value was expected.", True),
    ("RADECSYS= 'FK5'\nthe RADECSYS keyword is deprecated, use RADESYSa.", True),
    ("CROTA2  = 'abc'\na floating-point value was expected.", False),
    ("EQUINOX = 'J2000'\na floating-point value was expected.", False),
    ("something astropy has never said before", False),
])
def test_each_kind_of_astropy_fix_is_judged(text, harmless):
    assert (astrometry._warning_problem(FITSFixedWarning, text) is None) == harmless


# -- property: a mutated header gives the header's own positions, or none at all ---------------
NUMERIC_KEYS = ["CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CDELT1", "CDELT2", "PC1_1", "PC1_2", "PC2_1", "PC2_2",
                "CD1_1", "CD2_2", "LONPOLE"]
TEXT_VALUES = {
    "CTYPE1": ["RA---XYZ", "ra---tan", "RA", "DEC--TAN", "RA---NCP", "GLON-TAN", "LINEAR", "RA---TAN"],
    "CTYPE2": ["DEC--XYZ", "DEC", "RA---TAN", "DEC--SIN", "GLAT-TAN", "DEC--TAN"],
    "CUNIT1": ["DEG", "Degrees", "deg", "arcsec", "rad", "furlong", ""],
    "CUNIT2": ["DEG", "deg", "arcsec", "rad", ""],
    "RADESYS": ["XYZ", "ICRS", "", "FK5"],
}
RANGES = {"CRVAL1": (-720.0, 720.0), "CRVAL2": (-100.0, 100.0), "CRPIX1": (-5e3, 5e3), "CRPIX2": (-5e3, 5e3),
          "LONPOLE": (0.0, 360.0)}
#: Value texts as broken writers leave them on disk (astropy will not write them itself).
RAW = ["NaN", "nan", "-1E999", "1E400", "INF"]


@st.composite
def wcs_mutations(draw) -> list[tuple[str, str, object]]:
    """One to three changes to WCS keywords: (keyword, kind, value)."""
    keys = draw(st.lists(st.sampled_from(NUMERIC_KEYS + list(TEXT_VALUES)), min_size=1, max_size=3, unique=True))
    changes = []
    for key in keys:
        if key in TEXT_VALUES:
            changes.append((key, "set", draw(st.sampled_from(TEXT_VALUES[key]))))
            continue
        kind = draw(st.sampled_from(["delete", "numeric_string", "garbage", "raw", "bool", "zero",
                                     "number", "number", "number", "scale", "scale"]))  # more numbers: more valid WCSs
        if kind == "raw":
            value = draw(st.sampled_from(RAW))
        elif kind == "number":
            low, high = RANGES.get(key, (-1.0, 1.0))
            value = draw(st.floats(low, high, allow_nan=False))
        elif kind == "scale":  # a little off, or absurdly small or large, either sign
            value = draw(st.floats(-8.0, 8.0)) * draw(st.sampled_from([-1, 1]))
        else:
            value = None
        changes.append((key, kind, value))
    return changes


def mutated(header: fits.Header, changes: list[tuple[str, str, object]]) -> fits.Header:
    """``header`` changed, written out as text and read back as a file's header would be."""
    header, raw = header.copy(), {}
    for key, kind, value in changes:
        if kind == "set":
            header[key] = value
        elif kind == "delete":
            header.remove(key, ignore_missing=True)
        elif kind == "numeric_string":
            header[key] = repr(float(header.get(key, 1.0)))
        elif kind == "garbage":
            header[key] = "n/a"
        elif kind == "raw":
            header[key], raw[key] = 0.0, value
        elif kind == "bool":
            header[key] = True
        elif kind == "zero":
            header[key] = 0.0
        elif kind == "number":
            header[key] = value
        else:
            header[key] = float(header.get(key, 1.0) or 1.0) * 10.0 ** abs(value) * np.sign(value or 1.0)
    text = header.tostring()
    for key, value in raw.items():
        at = next(i for i in range(0, len(text), 80) if text[i:i + 8].rstrip() == key)
        text = text[:at] + f"{key:<8}= {value:>20}".ljust(80) + text[at + 80:]
    return fits.Header.fromstring(text)


def tan_reading(header: fits.Header) -> bool:
    """Whether the header reads, by the standard alone, as a plain ICRS TAN WCS in degrees with
    every value a number and nothing left to defaults that matter: the independent transform's domain."""
    numeric = ["CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CDELT1", "CDELT2", "LONPOLE",
               *[f"{m}{i}_{j}" for m in ("PC", "CD") for i in (1, 2) for j in (1, 2)]]
    for key in numeric:
        value = header.get(key, 0.0)
        if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
            return False
    has_cd = any(f"CD{i}_{j}" in header for i in (1, 2) for j in (1, 2))
    has_pc = any(f"PC{i}_{j}" in header for i in (1, 2) for j in (1, 2))
    return (header.get("CTYPE1") == "RA---TAN" and header.get("CTYPE2") == "DEC--TAN"
            and header.get("RADESYS", "ICRS") in ("ICRS", "")
            and all(k in header for k in ("CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2"))
            and (has_cd or ("CDELT1" in header and "CDELT2" in header)) and not (has_cd and has_pc)
            and all(str(header.get(f"CUNIT{i}", "deg")).strip().lower() in ("deg", "degree", "degrees", "")
                    for i in (1, 2)))


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """One image's pixels, measured once; the property test varies only its header."""
    sky = sky_header()
    path = write(tmp_path_factory.mktemp("property") / "sky.fits", sky, sky.header)
    settings = Settings.load(home=tmp_path_factory.mktemp("property_home"))
    image = read_image(str(path))
    return image, measure_pixels(image.data.copy(), image.mask, image.header, settings), settings


@hypothesis.settings(max_examples=80, deadline=None, derandomize=True, database=None)
@hypothesis.given(changes=wcs_mutations())
def test_a_mutated_wcs_gives_the_headers_own_positions_or_none(measured, changes):
    image, pixels, settings = measured
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)  # astropy fixes unparsable cards on reading
        header = mutated(image.header, changes)
        result = finish_catalog(replace(pixels, columns=dict(pixels.columns)), build_wcs(header), image.info,
                                header, settings)
    ra, dec = np.asarray(result.columns["ra"], float), np.asarray(result.columns["dec"], float)
    flagged = (result.columns["flags"] & F.WCS_INVALID) != 0
    hypothesis.event(result.stats["wcs_status"])
    if result.stats["wcs_status"] == WcsStatus.INVALID:
        assert np.isnan(ra).all() and np.isnan(dec).all() and flagged.all() and result.stats["wcs_message"]
        return
    assert result.stats["wcs_status"] == WcsStatus.VALID and not flagged.any()
    # FK5 and galactic frames are valid too, but converted to ICRS: outside the TAN reading
    frame = str(header.get("RADESYS", "ICRS")).strip()
    hypothesis.assume(frame in ("ICRS", "") and header.get("CTYPE1") != "GLON-TAN")
    # a sky position is given only where the header, read independently, says the same
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        assert tan_reading(header), f"positions from a header outside the TAN reading: {changes}"
        expected_ra, expected_dec = gnomonic(header, result.columns["x"], result.columns["y"])
    assert separation_deg(expected_ra, expected_dec, ra, dec).max() < TOLERANCE_DEG


def test_validation_checks_the_round_trip_over_the_image():
    header = sky_header(sip=True).header
    ok = validate_celestial_wcs(build_wcs(header), header, (SIZE, SIZE), min_scale_arcsec=1e-5, max_scale_arcsec=3600)
    assert ok.valid and ok.status == "valid"
    broken = _edit(A_2_0=1.0)(header)
    check = validate_celestial_wcs(build_wcs(broken), broken, (SIZE, SIZE), min_scale_arcsec=1e-5, max_scale_arcsec=3600)
    assert not check.valid and "invert" in check.message


@pytest.mark.parametrize("case", [*sorted(BROKEN), "valid", "valid_sip", "no_wcs", "helioprojective"])
def test_a_header_parsed_once_gives_the_kind_and_verdict_of_parsing_it_at_each_step(case):
    # read_image parses the WCS once and hands it on; wcs_kind skips the parse for named axes
    sky = sky_header(sip=case in ("valid_sip", "sip_without_sip_ctype", "sip_not_invertible"))
    header = sky.header.copy()
    if case in BROKEN:
        edit = BROKEN[case][0]  # (the raw cards, unparsable values, are written into files elsewhere)
        header = edit(header) if edit else header
    elif case == "no_wcs":
        header = fits.Header([(k, v) for k, v in header.items() if not k.startswith(("CTYPE", "CRVAL", "CUNIT"))])
    elif case == "helioprojective":
        header["CTYPE1"], header["CTYPE2"] = "HPLN-TAN", "HPLT-TAN"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = read_wcs(header)
        wcs = celestial_wcs(parsed)
        assert kind_of_wcs(header, wcs) == wcs_kind(header)
        once = validate_celestial_wcs(wcs, header, (256, 256), min_scale_arcsec=0.01, max_scale_arcsec=100.0,
                                      parsed=parsed)
        again = validate_celestial_wcs(build_wcs(header), header, (256, 256), min_scale_arcsec=0.01,
                                       max_scale_arcsec=100.0)
    assert once == again
