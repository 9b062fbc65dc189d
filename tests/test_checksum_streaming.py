"""CHECKSUM/DATASUM on the tiled path: the data unit streamed in bounded memory, the same
verdict (``images.checksum_status``, and the quarantine with ``reject_bad_checksum``) as the
in-memory path."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from hostile.runners import CHILD_ENV, Outcome, cap_memory, outcomes_from_rows
from skysift.catalog.query import LocalCatalog
from skysift.errors import TruncatedFile
from skysift.io.fits import read_image, streamed_checksum_status


def _flip_a_data_bit(path: Path, hdu: int = 0) -> None:
    """One bit of ``path``'s data unit flipped, the header (and its checksum) left alone."""
    raw = bytearray(path.read_bytes())
    with fits.open(path) as hdul:
        raw[hdul[hdu].fileinfo()["datLoc"] + 1001] ^= 0x01
    path.write_bytes(bytes(raw))


def _checksummed_files(folder: Path, data: np.ndarray, header: fits.Header) -> dict[str, str]:
    """The same image with good, bad and absent checksums, gzipped, tile-compressed and in an
    extension; returns each file's name and the checksum verdict it was made to have."""
    folder.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(data, header).writeto(folder / "good.fits", checksum=True)
    fits.PrimaryHDU(data, header).writeto(folder / "absent.fits")
    fits.PrimaryHDU(data, header).writeto(folder / "bad.fits", checksum=True)
    _flip_a_data_bit(folder / "bad.fits")
    (folder / "bad.fits.gz").write_bytes(gzip.compress((folder / "bad.fits").read_bytes(), compresslevel=1))
    (folder / "good.fits.gz").write_bytes(gzip.compress((folder / "good.fits").read_bytes(), compresslevel=1))
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, header)]).writeto(folder / "good.fits.fz", checksum=True)
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, header)]).writeto(folder / "bad_ext.fits", checksum=True)
    _flip_a_data_bit(folder / "bad_ext.fits", hdu=1)
    return {"good.fits": "ok", "absent.fits": "absent", "bad.fits": "bad", "bad.fits.gz": "bad",
            "good.fits.gz": "ok", "good.fits.fz": "ok", "bad_ext.fits": "bad"}


@pytest.fixture(scope="module")
def sky_512():
    """A 512 x 512 synthetic sky (data, header) with a celestial WCS and about a hundred sources."""
    from skysift.analysis.synthetic import SkySpec, random_sources, render

    rng = np.random.default_rng(41)
    spec = SkySpec(nx=512, ny=512)
    stars, galaxies = random_sources(spec, 150, 20, rng)
    sky = render(spec, stars, galaxies, rng, {"DATE-OBS": "2026-01-01T00:00:00", "FILTER": "r", "SURVEY": "test"})
    return sky.data.astype(np.float32), sky.header


@pytest.mark.parametrize("chunk_bytes", [32 * 2**20, 2880 * 4, 1001])  # the default, small, not whole words
def test_streamed_verdict_is_the_in_memory_verdict(tmp_path, chunk_bytes):
    rng = np.random.default_rng(3)
    data = rng.normal(100, 5, (70, 90)).astype(np.float32)
    designed = _checksummed_files(tmp_path, data, fits.Header({"OBJECT": "x"}))
    for name, verdict in designed.items():
        path = str(tmp_path / name)
        assert streamed_checksum_status(path, chunk_bytes=chunk_bytes) == verdict, name
        assert read_image(path).info.checksum_status == verdict, name


def test_a_gzip_stream_cut_inside_the_data_is_a_truncated_file(tmp_path):
    path = tmp_path / "cut.fits.gz"
    image = fits.PrimaryHDU(np.random.default_rng(1).normal(size=(300, 300)).astype(np.float32))
    buffer = path.with_suffix("")
    image.writeto(buffer, checksum=True)
    path.write_bytes(gzip.compress(buffer.read_bytes())[:-20_000])
    with pytest.raises(TruncatedFile, match="ends inside the image's data"):
        streamed_checksum_status(str(path))


#: A child that writes a 1 GiB image (plain, sparse on disk) and a 512 MiB one (gzip), caps its
#: own address space at what it has mapped after its imports plus 128 MiB, and verifies both.
_BOUNDED = textwrap.dedent("""
    import gzip, resource, sys
    import numpy as np
    from astropy.io import fits
    from skysift.io.fits import streamed_checksum_status

    folder = sys.argv[1]
    def header(side, datasum):
        h = fits.PrimaryHDU(np.zeros((1, 1), np.float32)).header
        h["NAXIS1"], h["NAXIS2"], h["DATASUM"] = side, side, datasum  # the sum of zeros is 0
        return h.tostring().encode()
    def padded(side):
        return -(-side * side * 4 // 2880) * 2880
    with open(f"{folder}/plain.fits", "wb") as f:
        f.write(header(16384, "0"))
        f.truncate(f.tell() + padded(16384))
    zeros = bytes(2**24)
    with gzip.open(f"{folder}/zipped.fits.gz", "wb", compresslevel=1) as f:
        f.write(header(11586, "1"))  # a wrong sum
        left = padded(11586)
        while left:
            f.write(zeros[:min(left, len(zeros))])
            left -= min(left, len(zeros))
    del zeros
    mapped = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmSize"))
    resource.setrlimit(resource.RLIMIT_AS, (mapped + 128 * 2**20,) * 2)
    print(streamed_checksum_status(f"{folder}/plain.fits"), streamed_checksum_status(f"{folder}/zipped.fits.gz"))
""")


def test_streaming_a_gibibyte_fits_in_a_small_memory_cap(tmp_path):
    done = subprocess.run([sys.executable, "-c", _BOUNDED, str(tmp_path)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["ok", "bad"]


# -- skysift run: in memory and forced onto tiles -------------------------------------------------
def _run(corpus: Path, home: Path, config: Path) -> dict[str, Outcome]:
    """``skysift --config CONFIG run CORPUS`` in a child capped as the hostile corpus's are
    (:mod:`hostile.runners`); the ``images`` row of each file."""
    command = [sys.executable, "-c", "from skysift.cli.main import main; main()", "--home", str(home),
               "--config", str(config), "run", str(corpus), "-j", "1", "--force"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False,
                          preexec_fn=cap_memory, env={**os.environ, **CHILD_ENV})
    assert done.returncode in (0, 1), done.stderr[-3000:]  # 1: a refused file is a failure
    catalog = LocalCatalog(home)
    return outcomes_from_rows(catalog.arrow("SELECT * FROM images").to_pylist(),
                              catalog.arrow("SELECT image_id, ra, dec FROM sources").to_pylist())


@pytest.mark.parametrize("reject", [False, True], ids=["recorded", "rejected"])
def test_tiled_run_gives_the_in_memory_checksum_verdicts(tmp_path, sky_512, reject):
    data, header = sky_512
    designed = _checksummed_files(tmp_path / "corpus", data, header)
    switch = f"reject_bad_checksum = {str(reject).lower()}\n"
    whole_cfg, tiled_cfg = tmp_path / "whole.toml", tmp_path / "tiled.toml"
    whole_cfg.write_text(f"[limits]\n{switch}")
    tiled_cfg.write_text(f"[limits]\n{switch}max_pixels = 100000\n")  # 512 x 512 is over: tiles

    whole = _run(tmp_path / "corpus", tmp_path / "whole", whole_cfg)
    tiled = _run(tmp_path / "corpus", tmp_path / "tiled", tiled_cfg)

    for name, verdict in designed.items():
        refused = reject and verdict == "bad"
        expected = ("failed", "bad_checksum", verdict) if refused else ("ok", None, verdict)
        for path, outcome in (("in memory", whole[name]), ("tiled", tiled[name])):
            assert (outcome.status, outcome.reason, outcome.checksum_status) == expected, (name, path, outcome)
        assert (whole[name].route, tiled[name].route) == ("local", "large"), name
        if refused:  # quarantined before any tile was measured
            assert whole[name].n_sources == tiled[name].n_sources == 0, name
        else:
            assert abs(whole[name].n_sources - tiled[name].n_sources) <= 3 and tiled[name].n_sources > 50, name
