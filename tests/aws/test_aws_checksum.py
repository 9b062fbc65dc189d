"""CHECKSUM/DATASUM on the Batch route: the worker (:mod:`skysift.aws.worker`, run by the
emulated Batch) streams the data unit and records the verdict the in-memory path records, and a
deployment that rejects bad checksums quarantines the file with the same reason."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from astropy.io import fits
from aws_support import PARAMETERS, ROOT, sky_file

from skysift.aws.config import settings_from_env
from skysift.pipeline.image import process_image


def _checksummed(folder: Path) -> dict[str, str]:
    """A 200 x 200 sky with good, absent and bad checksums (plain and gzipped); each file's
    name and its designed verdict."""
    plain = sky_file(folder / "plain.fits")
    with fits.open(plain) as hdul:
        hdul.writeto(folder / "good.fits", checksum=True)
        hdul.writeto(folder / "bad.fits", checksum=True)
        data_start = hdul[0].fileinfo()["datLoc"]
    plain.rename(folder / "absent.fits")
    raw = bytearray((folder / "bad.fits").read_bytes())
    raw[data_start + 1001] ^= 0x01  # one data bit, the header's sums left as they were
    (folder / "bad.fits").write_bytes(bytes(raw))
    (folder / "bad.fits.gz").write_bytes(gzip.compress(bytes(raw), compresslevel=1))
    return {"good.fits": "ok", "absent.fits": "absent", "bad.fits": "bad", "bad.fits.gz": "bad"}


@pytest.mark.parametrize("reject", [False, True], ids=["recorded", "rejected"])
def test_batch_jobs_record_the_in_memory_checksum_verdict(tmp_path, monkeypatch, reject):
    from skysift.aws.emulation.emulate import Emulation

    monkeypatch.setenv("SKYSIFT_LIMITS__REJECT_BAD_CHECKSUM", str(reject).lower())  # the functions' and jobs' settings
    designed = _checksummed(tmp_path)
    with Emulation(ROOT, parameters={**PARAMETERS, "SmallImageMaxPixels": 10_000}) as aws:  # 200 x 200: Batch
        for name in designed:
            aws.upload(tmp_path / name, f"night-2026-01-01/{name}")
        executions = aws.wait()
        rows = {row["uri"].rsplit("/", 1)[-1]: row for row in aws.read_table("images").to_pylist()}

    assert len(executions) == len(designed)
    settings = settings_from_env().model_copy(update={"home": tmp_path / "home"})
    for name, verdict in designed.items():
        refused = reject and verdict == "bad"
        expected = ("failed", "bad_checksum", verdict) if refused else ("ok", None, verdict)
        in_memory = process_image(str(tmp_path / name), settings).record.to_row()
        batch = rows[name]
        assert (in_memory["route"], batch["route"]) == ("local", "large"), name
        for path, row in (("in memory", in_memory), ("batch", batch)):
            assert (row["status"], row["error_reason"], row["checksum_status"]) == expected, (name, path)
