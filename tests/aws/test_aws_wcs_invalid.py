"""IngestImage on the emulated system with broken WCS headers: measured, sky positions null."""

from __future__ import annotations

import json
from pathlib import Path

from astropy.io import fits
from aws_support import sky_file

from skysift.core import flags as F


def broken(path: Path, **cards) -> Path:
    sky_file(path)
    with fits.open(path, mode="update") as hdul:
        hdul[0].header.update(cards)
    return path


def test_broken_wcs_images_are_measured_with_null_sky_positions_in_glue(emulation, tmp_path):
    queue = emulation.subscribe_queue("everything")
    uris = {
        emulation.upload(broken(tmp_path / "string.fits", CRVAL1="150.1"), "night-2026-01-01/string.fits"): "CRVAL1",
        emulation.upload(broken(tmp_path / "xyz.fits", CTYPE1="RA---XYZ-SIP", CTYPE2="DEC--XYZ-SIP"),
                         "night-2026-01-01/xyz.fits"): "projection",
    }

    executions = emulation.wait()

    assert [e["status"] for e in executions] == ["SUCCEEDED", "SUCCEEDED"], [e.get("cause") for e in executions]
    outputs = [json.loads(e["output"]) for e in executions]
    assert {(o["status"], o["route"]) for o in outputs} == {("ok", "small")}  # measured, not indexed
    images = {row["uri"]: row for row in emulation.read_table("images").to_pylist()}
    sources = emulation.read_table("sources").to_pylist()
    for uri, words in uris.items():
        row = images[uri]
        assert (row["wcs_kind"], row["wcs_status"]) == ("celestial", "wcs_invalid")
        assert words in row["wcs_message"] and row["center_ra"] is None
        mine = [s for s in sources if s["image_id"] == row["image_id"]]
        assert len(mine) == row["n_sources"] > 10
        assert all(s["ra"] is None and s["dec"] is None and s["flags"] & F.WCS_INVALID for s in mine)
    # alerts that need no sky position still go out, with null coordinates
    alerts = emulation.read_table("alerts").to_pylist()
    assert alerts and all(a["ra"] is None and a["rule"] != "new_source" for a in alerts)
    assert len(emulation.receive(queue)) == len(alerts)
