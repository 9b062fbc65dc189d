"""The hostile corpus through every path: the same verdict locally and on the emulated AWS system.

Each file of :mod:`hostile.corpus` (not FITS, empty, truncated, impossible headers, gzip bombs,
byte orders, scaled integers, NaN, extensions, tile compression, checksums, odd WCS, cubes) goes
through ``skysift run`` and through IngestImage on moto, each in a child process capped at 4 GiB
of address space. Both must record the designed status and reason in ``images``, the same
number of sources for the valid ones, and sky coordinates only where the WCS can be trusted.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from hostile.corpus import crc32_zeros, gzip_with_zeros, write_corpus
from hostile.report import Row, compare, markdown
from hostile.runners import LOCAL_BUDGET_S, PathRun, run_emulated, run_local
from skysift.io.storage import FITS_SUFFIXES

KINDS_REQUIRED = 20


def test_corpus_covers_twenty_kinds_in_a_few_tens_of_megabytes(tmp_path: Path):
    corpus = write_corpus(tmp_path)

    names = [e.name for e in corpus]
    assert len(set(names)) == len(names) >= KINDS_REQUIRED
    assert all(name.lower().endswith(FITS_SUFFIXES) for name in names)  # both paths pick every file up
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) < 32 * 2**20
    for e in corpus:
        assert e.status in ("ok", "indexed", "failed"), e.name
        assert (e.reason is not None) == (e.status == "failed"), e.name
        assert (e.coords is not None) == (e.min_sources > 0), e.name  # coordinates are judged on sources
        assert e.status == "ok" or (e.min_sources, e.max_sources) == (0, None), e.name
    statuses = {e.status for e in corpus}
    assert statuses == {"ok", "indexed", "failed"}


def test_gzip_of_zeros_is_a_valid_stream_without_inflating_it():
    assert all(crc32_zeros(zlib.crc32(b"abc"), n) == zlib.crc32(bytes(n), zlib.crc32(b"abc"))
               for n in (0, 1, 7, 4096, 2**20 + 5))
    blob = gzip_with_zeros(b"SIMPLE", 3 * 2**20 + 17)

    assert gzip.decompress(blob) == b"SIMPLE" + bytes(3 * 2**20 + 17)  # gzip checks the CRC and size
    assert len(blob) < 10_000


@dataclass(frozen=True)
class CorpusRuns:
    """The corpus through both paths: each file's row of :func:`hostile.report.compare`, and the runs."""

    rows: list[Row]
    local: PathRun
    aws: PathRun

    def report(self) -> str:
        return markdown(self.rows, self.local, self.aws)


@pytest.fixture(scope="module")
def corpus_runs(tmp_path_factory) -> CorpusRuns:
    """The corpus through ``skysift run`` and the emulated AWS system, once for the tests below
    (each path takes minutes)."""
    root = tmp_path_factory.mktemp("hostile")
    corpus = write_corpus(root / "corpus")
    local = run_local(root / "corpus", root / "local" / "home")
    aws = run_emulated(root / "corpus", root / "aws")
    return CorpusRuns(compare(corpus, local, aws), local, aws)


def _run_notes(runs: CorpusRuns) -> list[str]:
    """What went wrong with the runs themselves (killed, a traceback, the emulation's exit code)."""
    local, aws, notes = runs.local, runs.aws, []
    if local.returncode < 0:
        notes.append(f"skysift run was killed (signal {-local.returncode}) after {local.seconds:.0f} s "
                     f"(budget {LOCAL_BUDGET_S:.0f} s): the files without a row pinned a worker")
    if "Traceback" in local.log:
        notes.append(f"a traceback in skysift run's output:\n{local.log_tail}")
    if aws.returncode != 0:
        notes.append(f"the emulation exited {aws.returncode} after {aws.seconds:.0f} s:\n{aws.log_tail}")
    return notes


def _problems(rows: list[Row]) -> tuple[list[str], list[str]]:
    """Every file's problems, split: (the AWS side of files of several images, every other).

    IngestImage measures each image HDU of a file in a Map, as ``skysift run`` measures each:
    the AWS side of a multi-extension file of several images has a test of its own below.
    """
    several_on_aws, others = [], []
    for row in rows:
        for problem in row.problems():
            open_finding = row.entry.rows > 1 and problem.startswith("aws:")
            (several_on_aws if open_finding else others).append(f"{row.entry.name}: {problem}")
    return several_on_aws, others


@pytest.mark.slow
def test_every_corpus_file_gets_its_designed_verdict_locally_and_on_emulated_aws(corpus_runs):
    _, others = _problems(corpus_runs.rows)
    notes = _run_notes(corpus_runs)
    assert (others, notes) == ([], []), "\n".join(notes) + "\n\n" + corpus_runs.report()


@pytest.mark.slow
def test_a_file_of_several_images_gets_a_row_per_image_on_emulated_aws(corpus_runs):
    several_on_aws, _ = _problems(corpus_runs.rows)
    assert several_on_aws == [], corpus_runs.report()
