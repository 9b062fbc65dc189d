"""IngestImage on the emulated system for an image without a celestial WCS: a pixel catalog."""

from __future__ import annotations

import json
from pathlib import Path

from astropy.io import fits
from aws_support import sky_file

from skysift.core import flags as F


def without_wcs(path: Path) -> Path:
    """A synthetic sky whose header names no sky axes (blank CTYPEs, no SIP), as sep's test image."""
    sky_file(path)
    with fits.open(path) as hdul:
        header = fits.Header([(k, v) for k, v in hdul[0].header.items() if not k.startswith(("A_", "B_"))])
        header["CTYPE1"] = header["CTYPE2"] = ""
        data = hdul[0].data
        fits.PrimaryHDU(data, header).writeto(path, overwrite=True)
    return path


def test_an_image_without_a_celestial_wcs_is_measured_in_pixels_not_indexed(emulation, tmp_path):
    uri = emulation.upload(without_wcs(tmp_path / "lab.fits"), "night-2026-01-01/lab.fits")

    [execution] = emulation.wait()

    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    output = json.loads(execution["output"])
    assert (output["status"], output["route"]) == ("ok", "small")
    [row] = emulation.read_table("images").to_pylist()
    assert (row["uri"], row["wcs_kind"], row["wcs_status"], row["center_ra"]) == (uri, "none", "none", None)
    sources = emulation.read_table("sources").to_pylist()
    assert len(sources) == row["n_sources"] == output["n_sources"] > 10
    assert all(s["ra"] is None and s["dec"] is None and not s["flags"] & F.WCS_INVALID for s in sources)
    assert row["settings_hash"]
