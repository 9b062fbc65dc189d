"""`skysift export`: FITS tables, VOTables and DS9 regions that astropy and regions read back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from skysift.catalog.export import ds9_regions
from skysift.catalog.query import LocalCatalog

regions = pytest.importorskip("regions")

SKYSIFT = [sys.executable, "-m", "skysift.cli.main"]


def _skysift(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*SKYSIFT, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def processed(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("export")
    assert _skysift("sample", "sky", "--size", "256", cwd=root).returncode == 0
    assert _skysift("--home", "home", "run", "sky", cwd=root).returncode == 0
    return root


def _catalog(root: Path, image: Path) -> pa.Table:
    return LocalCatalog(root / "home").arrow("SELECT s.* FROM sources s JOIN images i USING (image_id) WHERE i.uri = $uri ORDER BY source_num",
                      {"uri": str(image.resolve())})


@pytest.mark.parametrize("suffix", [".fits", ".vot"])
def test_tables_read_back_with_units_and_every_row(processed, suffix):
    out = processed / f"catalog{suffix}"
    done = _skysift("--home", "home", "export", "-o", str(out), "--where", "snr > 10", cwd=processed)
    assert done.returncode == 0, done.stderr
    table = Table.read(out)
    expected = LocalCatalog(processed / "home").sql("SELECT COUNT(*) AS n FROM sources WHERE snr > 10")["n"][0]
    assert len(table) == expected > 0
    assert table["ra"].unit == "deg" and table["flux"].unit == "ct" and table["x"].unit == "pix"
    assert (table["snr"] > 10).all()


def test_ds9_regions_sit_on_the_sources_through_the_images_own_wcs(processed):
    image = processed / "sky" / "field_001.fits"
    out = processed / "field_001.reg"
    done = _skysift("--home", "home", "export", "-o", str(out), "--image", "sky/field_001.fits", cwd=processed)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert text.splitlines()[1] == "icrs" and "ellipse(" in text
    shapes = regions.Regions.read(str(out), format="ds9")
    sources = _catalog(processed, image)
    assert len(shapes) == sources.num_rows > 0
    with fits.open(image) as hdul:
        wcs = WCS(hdul[0].header)  # independent of skysift: the file's own header
    centres = np.array([[s.to_pixel(wcs).center.x, s.to_pixel(wcs).center.y] for s in shapes])
    expected = np.column_stack([sources["x"].to_numpy(), sources["y"].to_numpy()])
    np.testing.assert_allclose(centres, expected, atol=0.01)


def test_sources_without_trusted_coordinates_get_pixel_regions():
    sources = pa.table({"source_num": [0, 1], "x": [10.0, 20.5], "y": [5.0, 7.25], "a": [2.0, 1.5],
                        "b": [1.0, 1.5], "theta": [0.3, 0.0], "kron_radius": [3.0, 3.5], "flags": [0, 4096],
                        "star_score": [0.9, 0.1], "ra": pa.array([None, None], pa.float64())})
    shapes = ds9_regions(sources, wcs=None)
    assert [type(s).__name__ for s in shapes] == ["EllipsePixelRegion"] * 2
    assert [s.visual["color"] for s in shapes] == ["green", "red"]
    assert shapes[0].width == pytest.approx(2 * 2.0 * 7.5)  # the AUTO aperture: 2.5 Kron radii


def test_a_region_file_needs_one_image(processed):
    done = _skysift("--home", "home", "export", "-o", str(processed / "all.reg"), cwd=processed)
    assert done.returncode == 2
    assert "--image" in done.stderr and "Traceback" not in done.stderr
