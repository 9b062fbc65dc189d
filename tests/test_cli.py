"""The commands a user types, end to end, on a small sample survey."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_skies import write_line_sky
from skysift.catalog.query import LocalCatalog
from skysift.cli.main import cli

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    """`skysift sample` + `skysift run` on a 384-pixel sample survey with one corrupt upload."""
    root = tmp_path_factory.mktemp("cli")
    runner = CliRunner()
    home = str(root / "home")
    result = runner.invoke(cli, ["sample", str(root / "sky"), "--size", "384"])
    assert result.exit_code == 0, result.output
    (root / "sky" / "broken.fits").write_bytes((root / "sky" / "field_001.fits").read_bytes()[:100_000])
    result = runner.invoke(cli, ["--home", home, "run", str(root / "sky"), "-j", "2"])
    assert result.exit_code == 1, result.output  # the corrupt upload failed (and the run went on)
    return root, home, result.output


def test_run_prints_a_summary_and_carries_on_past_a_bad_file(processed):
    _, _, output = processed
    assert "8 ok, 0 indexed, 1 failed" in output
    assert re.search(r"broken\.fits.*failed.*truncated", output)
    assert "1 failure(s)" in output and re.search(r"^  \S+broken\.fits: truncated: ", output, flags=re.M)


def test_query_prints_the_answer(processed):
    _, home, _ = processed
    result = CliRunner().invoke(cli, ["--home", home, "query", "--format", "csv",
                                      "SELECT COUNT(*) AS n, COUNT(DISTINCT image_id) AS images FROM sources"])
    assert result.exit_code == 0, result.output
    n, images = result.output.splitlines()[1].split(",")
    assert int(n) > 200 and int(images) == 8


def test_bad_sql_is_a_clear_error(processed):
    _, home, _ = processed
    result = CliRunner().invoke(cli, ["--home", home, "query", "SELECT nope FROM sources"])
    assert result.exit_code == 2 and "bad_query" in result.output


def test_alerts_lists_the_transient(processed):
    _, home, _ = processed
    result = CliRunner().invoke(cli, ["--home", home, "alerts", "--json"])
    assert result.exit_code == 0
    assert '"rule": "new_source"' in result.output


def test_plot_writes_a_png(processed, tmp_path):
    root, home, _ = processed
    out = tmp_path / "field.png"
    result = CliRunner().invoke(cli, ["--home", home, "plot", str(root / "sky" / "field_001.fits"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000


def test_plot_of_a_bad_file_is_a_clear_error(processed, tmp_path):
    root, home, _ = processed
    result = CliRunner().invoke(cli, ["--home", home, "plot", str(root / "sky" / "broken.fits")])
    assert result.exit_code == 2 and "truncated" in result.output


def test_every_sql_example_in_the_readme_runs(processed):
    _, home, _ = processed
    blocks = re.findall(r"```sql\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 5
    for sql in blocks:
        result = CliRunner().invoke(cli, ["--home", home, "query", "--format", "csv", sql])
        assert result.exit_code == 0, (sql, result.output)
        assert len(result.output.splitlines()) >= 2, sql  # a header and at least one row


def _skysift(*args: str, cwd: Path, harness: str = "") -> subprocess.CompletedProcess:
    """``skysift ARGS`` in a process of its own, as a user runs it (``harness``: Python run first)."""
    code = f"{harness}\nfrom skysift.cli.main import main\nmain()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.fixture
def survey(make_sky, tmp_path):
    """Two small skies and the one whose one-pixel-wide source used to stop `skysift run`."""
    folder = tmp_path / "survey"
    folder.mkdir()
    for i in range(2):
        path, _ = make_sky(f"field_{i}.fits", seed=i, size=128, n_stars=20, n_galaxies=2)
        path.rename(folder / path.name)
    write_line_sky(folder / "streak.fits")
    return folder


def test_run_exits_0_when_every_image_succeeds(survey, tmp_path):
    """Including the image whose one-pixel-wide source stopped `skysift run --threshold 3`."""
    done = _skysift("--home", str(tmp_path / "home"), "run", str(survey), "-j", "2", "--threshold", "3", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 ok, 0 indexed, 0 failed" in done.stdout and "failure" not in done.stdout
    assert "Traceback" not in done.stderr


def test_run_exits_1_listing_the_failure_when_one_image_fails_and_measures_the_rest(survey, tmp_path):
    (survey / "upload.fits").write_bytes((survey / "field_0.fits").read_bytes()[:10_000])

    done = _skysift("--home", str(tmp_path / "home"), "run", str(survey), "-j", "2", "--threshold", "3", cwd=tmp_path)

    assert done.returncode == 1, done.stdout + done.stderr
    assert "3 ok, 0 indexed, 1 failed" in done.stdout and "1 failure(s)" in done.stdout
    assert re.search(r"^  \S+upload\.fits: truncated: ", done.stdout, flags=re.M)
    assert "Traceback" not in done.stderr


def test_a_worker_killed_mid_run_fails_its_image_and_the_run_finishes(survey, tmp_path):
    """SIGKILL (what the kernel's out-of-memory killer sends) on the worker measuring one file."""
    harness = (
        "import os, signal\n"
        "import skysift.pipeline.survey as runner\n"
        "real = runner.process_image\n"
        "def process(uri, *a, **k):\n"
        "    if uri.endswith('field_1.fits'):\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return real(uri, *a, **k)\n"
        "runner.process_image = process"
    )
    home = tmp_path / "home"

    result = _skysift("--home", str(home), "run", str(survey), "-j", "2", cwd=tmp_path, harness=harness)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "2 ok, 0 indexed, 1 failed" in result.stdout
    assert re.search(r"^  \S+field_1\.fits: worker_died: .*SIGKILL", result.stdout, flags=re.M)
    assert "Traceback" not in result.stderr
    failed = LocalCatalog(home).sql("SELECT uri, error_reason FROM images WHERE status = 'failed'")
    assert failed.to_dict("records") == [{"uri": str(survey / "field_1.fits"), "error_reason": "worker_died"}]


def test_a_second_run_of_the_current_folder_does_not_ingest_its_own_outputs(survey, monkeypatch):
    """The home (default ./skysift-data) inside the folder being run: its alert cut-outs are outputs."""
    monkeypatch.chdir(survey)
    first = CliRunner().invoke(cli, ["run", ".", "-j", "1", "--min-snr-alert", "20"])
    assert first.exit_code == 0, first.output
    cutouts = list((survey / "skysift-data" / "cutouts").glob("*.fits"))
    assert cutouts  # alert cut-outs (FITS files) now lie inside the folder

    second = CliRunner().invoke(cli, ["run", ".", "-j", "1", "--min-snr-alert", "20", "--force"])

    assert second.exit_code == 0, second.output
    assert "3 ok, 0 indexed, 0 failed" in second.output
    uris = LocalCatalog(survey / "skysift-data").sql("SELECT DISTINCT uri FROM images")["uri"].tolist()
    assert sorted(Path(u).name for u in uris) == ["field_0.fits", "field_1.fits", "streak.fits"]
