"""A damaged table file: named in one line, found by `skysift check`, moved aside, redone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from skysift.catalog import integrity

SKYSIFT = [sys.executable, "-m", "skysift.cli.main"]


def _skysift(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*SKYSIFT, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "60"})


@pytest.fixture(scope="module")
def processed(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("integrity")
    assert _skysift("sample", "sky", "--size", "256", cwd=root).returncode == 0
    done = _skysift("--home", "home", "run", "sky", cwd=root)
    assert done.returncode == 0, done.stderr
    return root


def _count(root: Path) -> int:
    done = _skysift("--home", "home", "query", "SELECT COUNT(*) AS n FROM sources", "--format", "csv", cwd=root)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


def test_a_damaged_file_is_named_moved_aside_and_its_image_redone(processed):
    before = _count(processed)
    victim = sorted((processed / "home" / "tables" / "sources").glob("*/*/*/*.parquet"))[0]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])

    query = _skysift("--home", "home", "query", "SELECT 1", cwd=processed)
    assert query.returncode != 0
    assert "Traceback" not in query.stderr
    lines = [line for line in query.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "damaged_table" in lines[0] and victim.name in lines[0]

    check = _skysift("--home", "home", "check", cwd=processed)
    assert check.returncode == 1
    assert f"damaged: home/tables/sources/{victim.relative_to(processed / 'home' / 'tables' / 'sources')}" \
        in check.stdout

    repair = _skysift("--home", "home", "check", "--repair", cwd=processed)
    assert repair.returncode == 0, repair.stderr
    assert (processed / "home" / "damaged" / victim.relative_to(processed / "home")).exists()
    assert not victim.exists()

    rerun = _skysift("--home", "home", "run", "sky", cwd=processed)
    assert rerun.returncode == 0, rerun.stderr
    assert _count(processed) == before  # the image whose sources were lost was measured again
    assert _skysift("--home", "home", "check", cwd=processed).returncode == 0


def test_orphan_temporaries_are_removed_only_when_old(tmp_path):
    folder = tmp_path / "tables" / "images" / "survey=s" / "band=b" / "obs_night=n"
    folder.mkdir(parents=True)
    old, fresh = folder / ".abc.1.tmp", folder / ".abc.2.tmp"
    old.write_bytes(b"x")
    fresh.write_bytes(b"x")
    past = time.time() - 2 * integrity.ORPHAN_AGE_S
    os.utime(old, (past, past))
    assert integrity.remove_orphan_temporaries(tmp_path) == [old]
    assert fresh.exists() and not old.exists()
