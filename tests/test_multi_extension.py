"""Every image HDU of a multi-extension file is an image of its own (issue 14, item 6).

A mosaic written here ships one CCD per extension (as DECam, HSC and ZTF do): each CCD
gets its own image_id, images row and sources; ``--hdu`` narrows a run to one CCD and
never touches the others' rows; the first image's id is the file's, as it always was;
a damaged extension fails alone; and ``images.bitpix`` is the file's.
"""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner

from skysift.analysis.synthetic import SkySpec, random_sources, render
from skysift.catalog.query import LocalCatalog
from skysift.cli.main import cli
from skysift.errors import TruncatedFile
from skysift.io import fitsheader, storage
from skysift.io.fits import image_hdu_headers, image_hdus, inspect_image, make_image_id, read_image
from skysift.pipeline.survey import run_local
from skysift.settings import Settings

CCDS = ("CCD1", "CCD2", "CCD3")


def write_mosaic(path: Path, *, seeds=(1, 2, 3), size: int = 192) -> Path:
    """An empty primary (observation keywords) and one int16 CCD per extension, each on its own patch of sky."""
    primary = fits.PrimaryHDU()
    primary.header.update({"DATE-OBS": "2026-03-01T00:00:00", "FILTER": "r", "SURVEY": "mosaic"})
    hdus = [primary]
    for k, (name, seed) in enumerate(zip(CCDS, seeds, strict=True)):
        rng = np.random.default_rng(seed)
        spec = SkySpec(nx=size, ny=size, center_ra=150.0 + 0.03 * k, sip=False)
        stars, galaxies = random_sources(spec, 25 + 10 * k, 3, rng, mag_range=(17.0, 22.0), margin_px=10)
        sky = render(spec, stars, galaxies, rng)
        header = sky.header.copy()
        header["EXTNAME"] = name
        hdus.append(fits.ImageHDU(np.round(sky.data).astype(np.int16), header))  # int16: BITPIX 16, as stored
    hdus.append(fits.BinTableHDU.from_columns([fits.Column(name="ccd", format="10A", array=np.array(CCDS))],
                                              name="CCDINFO"))  # a table extension is not an image
    fits.HDUList(hdus).writeto(path)
    return path


@pytest.fixture
def mosaic(tmp_path) -> Path:
    folder = tmp_path / "night"
    folder.mkdir()
    return write_mosaic(folder / "mosaic.fits")


def _images(home: Path):
    return LocalCatalog(home).sql("SELECT * FROM images ORDER BY hdu")


def _sources_per_image(home: Path) -> dict[str, int]:
    counts = LocalCatalog(home).sql("SELECT image_id, COUNT(*) n FROM sources GROUP BY 1")
    return dict(zip(counts["image_id"], counts["n"], strict=True))


def _run(home: Path, *args: str):
    result = CliRunner().invoke(cli, ["--home", str(home), "run", *args, "-j", "1"])
    assert result.exit_code == 0, result.output
    return result


def test_header_walk_lists_every_image_hdu_without_reading_pixels(mosaic):
    with open(mosaic, "rb") as handle:
        listing = fitsheader.list_hdus(handle, uri=str(mosaic), object_size=mosaic.stat().st_size)
    assert [h.name for h in listing.hdus] == ["PRIMARY", *CCDS, "CCDINFO"] and listing.error is None
    assert [h.index for h in listing.images] == [1, 2, 3]
    assert image_hdus(str(mosaic)) == [None, 2, 3]  # None: the first image, read as hdu=None always was
    listed = image_hdu_headers(str(mosaic))  # each with its own header, from the same walk
    assert [h for h, _ in listed] == [None, 2, 3] and [header["EXTNAME"] for _, header in listed] == list(CCDS)


def test_listing_is_bounded_by_max_hdus(mosaic):
    limits = fitsheader.HeaderLimits(max_hdus=3)
    with open(mosaic, "rb") as handle:
        listing = fitsheader.list_hdus(handle, uri=str(mosaic), object_size=mosaic.stat().st_size, limits=limits)
    assert len(listing.hdus) == 3 and listing.failed_index == 3
    assert "more than 3 HDUs" in str(listing.error)
    assert image_hdus(str(mosaic), limits=limits) == [None, 2, 3]  # HDU 3's reading reports the limit
    assert image_hdu_headers(str(mosaic), limits=limits)[-1] == (3, None)  # the reporting HDU has no header


def test_gzipped_mosaic_lists_the_same_images(mosaic, tmp_path):
    zipped = tmp_path / "mosaic.fits.gz"
    zipped.write_bytes(gzip.compress(mosaic.read_bytes()))
    assert image_hdus(str(zipped)) == [None, 2, 3]


def _unfinished_gzip(raw: bytes) -> bytes:
    """``raw`` as the start of a gzip stream that never ends: an upload of a .fits.gz cut short."""
    deflate = zlib.compressobj(wbits=31)
    return deflate.compress(raw) + deflate.flush(zlib.Z_SYNC_FLUSH)


def _layout(path: Path) -> list[fitsheader.HduLayout]:
    with open(path, "rb") as handle:
        return list(fitsheader.list_hdus(handle, uri=str(path), object_size=path.stat().st_size).hdus)


@pytest.mark.parametrize("tail", [b"garbage " * 125, b"<html>503 Service Unavailable</html>\n" * 200, bytes(2880 * 3)],
                         ids=["text-part-block", "text-blocks", "zeros"])
def test_bytes_after_the_last_hdu_are_no_image(mosaic, tmp_path, tail):
    trailed = tmp_path / "trailed.fits"
    trailed.write_bytes(mosaic.read_bytes() + tail)
    with open(trailed, "rb") as handle:
        listing = fitsheader.list_hdus(handle, uri=str(trailed), object_size=trailed.stat().st_size)
    assert [h.name for h in listing.hdus] == ["PRIMARY", *CCDS, "CCDINFO"]
    assert (listing.error, listing.failed_index) == (None, None)
    assert image_hdus(str(trailed)) == [None, 2, 3]


def test_an_extension_cut_inside_its_header_is_one_failure(mosaic, tmp_path):
    cut = tmp_path / "cut.fits"
    cut.write_bytes(mosaic.read_bytes() + b"XTENSION= 'IMAGE   '" + b" " * 100)  # a fourth CCD's upload cut short

    assert image_hdus(str(cut)) == [None, 2, 3, 5]
    with pytest.raises(TruncatedFile, match="ends inside the header of HDU 5"):
        inspect_image(str(cut), 5)


@pytest.mark.parametrize(("where", "listed", "failed", "hdus"), [
    ("CCD2", 3, 2, [None, 2]),  # CCD2 fails as it is read: once, not again as an HDU after it
    ("CCD3", 4, 3, [None, 2, 3]),
    ("CCDINFO", 5, 4, [None, 2, 3, 5]),  # a table is no image: the HDU after it reads through the damage
])
@pytest.mark.parametrize("stream", ["unfinished", "finished"])
def test_a_gzip_stream_cut_inside_the_data_of_an_hdu_fails_one_image_there(mosaic, tmp_path, where, listed, failed,
                                                                           hdus, stream):
    layout = {h.name: h for h in _layout(mosaic)}[where]
    raw = mosaic.read_bytes()[: layout.data_offset + layout.data_bytes // 2]
    zipped = tmp_path / "cut.fits.gz"
    zipped.write_bytes(_unfinished_gzip(raw) if stream == "unfinished" else gzip.compress(raw))

    with gzip.open(zipped) as inflating:
        listing = fitsheader.list_hdus(inflating, uri=str(zipped), object_size=None, seekable=False)
    assert (len(listing.hdus), listing.failed_index) == (listed, failed)
    assert f"inside the data of HDU {failed}" in listing.error.message and "\n" not in listing.error.message
    assert image_hdus(str(zipped)) == hdus
    with pytest.raises(TruncatedFile):
        inspect_image(str(zipped), hdus[-1]) if hdus[-1] != failed else read_image(str(zipped), failed)


def test_a_run_gives_one_row_per_image_whatever_follows_or_cuts_the_last_one(mosaic, tmp_path):
    folder = mosaic.parent
    raw = mosaic.read_bytes()
    (folder / "trailed.fits").write_bytes(raw + b"garbage " * 125)
    ccd2 = {h.name: h for h in _layout(mosaic)}["CCD2"]
    (folder / "cut.fits.gz").write_bytes(_unfinished_gzip(raw[: ccd2.data_offset + ccd2.data_bytes // 2]))
    mosaic.unlink()
    home = tmp_path / "home"

    done = subprocess.run([sys.executable, "-m", "skysift.cli.main", "--home", str(home), "run", str(folder), "-j", "1"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})

    assert done.returncode == 1, done.stderr  # the cut CCD failed, and is listed
    rows = LocalCatalog(home).arrow("SELECT uri, hdu_name, status, error_reason, error_message FROM images "
                                    "ORDER BY uri, hdu").to_pylist()
    assert [(Path(r["uri"]).name, r["hdu_name"], r["status"], r["error_reason"]) for r in rows] == [
        ("cut.fits.gz", "CCD1", "ok", None), ("cut.fits.gz", None, "failed", "truncated"),
        ("trailed.fits", "CCD1", "ok", None), ("trailed.fits", "CCD2", "ok", None), ("trailed.fits", "CCD3", "ok", None),
    ]
    [message] = [r["error_message"] for r in rows if r["error_message"]]
    assert "truncated upload?" in message and "\n" not in message
    [trailing] = [line for line in done.stderr.splitlines() if line.startswith("WARNING") and "trailed.fits" in line]
    assert "trailed.fits: the bytes after the last HDU (from byte" in trailing and trailing.endswith("ignored")


def test_every_ccd_is_an_image_with_its_own_id_row_and_sources(mosaic, tmp_path):
    home = tmp_path / "home"
    _run(home, str(mosaic.parent))
    images = _images(home)
    assert images["hdu_name"].tolist() == list(CCDS) and images["status"].tolist() == ["ok"] * 3
    assert images["image_id"].nunique() == 3
    digest = storage.fingerprint(str(mosaic))
    # the first image keeps the id a single-image file (or the first CCD before) always had
    assert images["image_id"].tolist() == [make_image_id(str(mosaic), digest), make_image_id(str(mosaic), digest, 2),
                                           make_image_id(str(mosaic), digest, 3)]
    assert images["image_id"].tolist() == [inspect_image(str(mosaic), h).image_id for h in (None, "CCD2", 3)]
    counts = _sources_per_image(home)
    assert all(counts[i] == n for i, n in zip(images["image_id"], images["n_sources"], strict=True))
    assert all(n > 10 for n in images["n_sources"])
    # each CCD's sources lie on its own patch of sky
    centres = LocalCatalog(home).sql("SELECT i.hdu_name, AVG(s.ra) ra FROM sources s JOIN images i USING (image_id) "
                                     "GROUP BY 1 ORDER BY 1")
    assert np.all(np.diff(centres["ra"]) > 0.02)
    # observation keywords of the primary header reach every CCD, and BITPIX is the file's
    assert set(images["survey"]) == {"mosaic"} and set(images["band"]) == {"r"}
    assert images["bitpix"].tolist() == [16, 16, 16]
    assert (images["settings_hash"] == Settings.load(home=home).measurement_hash()).all()


def test_hdu_option_measures_only_that_ccd_and_force_leaves_the_others_alone(mosaic, tmp_path):
    home = tmp_path / "home"
    only = _run(home, str(mosaic), "--hdu", "CCD2")
    images = _images(home)
    assert images["hdu_name"].tolist() == ["CCD2"] and "1 images of 1 files" in only.output.replace("\n", " ")
    _run(home, str(mosaic))  # now every CCD: CCD2 is already done, CCD1 and CCD3 are measured
    before = _images(home).set_index("hdu_name")
    assert list(before.index) == list(CCDS)
    ccd1_sources = LocalCatalog(home).sql(f"SELECT * FROM sources WHERE image_id = '{before.loc['CCD1', 'image_id']}' "
                                          "ORDER BY source_num")

    _run(home, str(mosaic), "--hdu", "CCD2", "--force")

    after = _images(home).set_index("hdu_name")
    assert list(after.index) == list(CCDS) and (after["image_id"] == before["image_id"]).all()
    assert after.loc["CCD1", "processed_at"] == before.loc["CCD1", "processed_at"]  # untouched
    assert after.loc["CCD3", "processed_at"] == before.loc["CCD3", "processed_at"]
    assert after.loc["CCD2", "processed_at"] > before.loc["CCD2", "processed_at"]  # measured again
    again = LocalCatalog(home).sql(f"SELECT * FROM sources WHERE image_id = '{after.loc['CCD1', 'image_id']}' "
                                   "ORDER BY source_num")
    assert again.equals(ccd1_sources)
    assert _sources_per_image(home) == dict(zip(after["image_id"], after["n_sources"], strict=True))


def test_a_damaged_last_ccd_fails_alone_and_the_others_are_measured(mosaic, tmp_path):
    raw = mosaic.read_bytes()
    with fits.open(io.BytesIO(raw)) as hdul:
        hdul.pop()  # the table, so that CCD3's data is the end of the file
        buffer = io.BytesIO()
        hdul.writeto(buffer)
    damaged = mosaic.parent / "damaged.fits"
    damaged.write_bytes(buffer.getvalue()[:-2880 * 5])  # CCD3's data cut short: a truncated upload
    settings = Settings.load(home=tmp_path / "home")

    report = run_local([str(damaged)], settings)

    statuses = [(s.hdu, s.status, s.reason) for s in report.summaries]
    assert statuses == [(1, "ok", None), (2, "ok", None), (None, "failed", "truncated")]
    images = _images(settings.home)
    assert images["image_id"].nunique() == 3 and sorted(images["status"]) == ["failed", "ok", "ok"]
    failed = images[images["status"] == "failed"].iloc[0]
    assert failed["image_id"] == make_image_id(str(damaged), storage.fingerprint(str(damaged)), 3)  # its own id
    assert report.exit_code == 1


def test_bitpix_is_the_files_as_stored(m13_files):
    # m13 is int16 (BITPIX 16); its Rice tile-compressed twin says so in ZBITPIX
    for kind in ("plain", "rice"):
        assert inspect_image(str(m13_files[kind])).bitpix == 16, kind
