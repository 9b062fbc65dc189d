"""The commands a user types, end to end, on a small sample survey."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from skysift.cli import cli

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
    assert result.exit_code == 0, result.output
    return root, home, result.output


def test_run_prints_a_summary_and_carries_on_past_a_bad_file(processed):
    _, _, output = processed
    assert "8 ok, 0 indexed, 1 failed" in output
    assert re.search(r"broken\.fits.*failed.*truncated", output)


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
