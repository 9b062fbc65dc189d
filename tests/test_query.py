"""`skysift query` as documented: comments, several statements, every digit, types kept, every table."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from skysift.analysis.sample import make_sample
from skysift.catalog.query import LocalCatalog
from skysift.cli.main import cli

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "REFERENCE.md"
BIN = Path(sys.executable).parent


def _documented(start: str) -> str:
    """The ```bash block of docs/REFERENCE.md that begins with ``start``."""
    blocks = [b for b in re.findall(r"```bash\n(.*?)```", REFERENCE.read_text(), flags=re.S) if b.startswith(start)]
    assert len(blocks) == 1, start
    return blocks[0]


def _shell(script: str, home: Path, **kwargs) -> subprocess.CompletedProcess:
    """``script`` in bash, as a user pastes it, with ``skysift`` on the PATH; stdout is a pipe."""
    assert (BIN / "skysift").exists()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "SKYSIFT_HOME": str(home), "COLUMNS": "60"}
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=120, **kwargs)


def _rows(table_text: str) -> list[list[str]]:
    """The cells of a printed table's body rows."""
    return [[cell.strip() for cell in line.strip().strip("│").split("│")]
            for line in table_text.splitlines() if line.startswith("│")]


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A processed 256-pixel sample survey, crossmatched and with one completeness test."""
    root = tmp_path_factory.mktemp("query")
    make_sample(root / "sky", size=256, seed=7)
    runner = CliRunner()
    home = root / "home"
    result = runner.invoke(cli, ["--home", str(home), "run", str(root / "sky"), "-j", "2"])
    assert result.exit_code == 0, result.output
    truth = pd.read_parquet(root / "sky" / "truth.parquet")
    truth[truth["kind"] == "star"][["ra", "dec", "mag"]].drop_duplicates().to_parquet(root / "reference.parquet")
    result = runner.invoke(cli, ["--home", str(home), "crossmatch", "--reference", str(root / "reference.parquet")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["--home", str(home), "completeness", str(root / "sky" / "field_001.fits"),
                                 "--rounds", "2", "--stars", "80"])
    assert result.exit_code == 0, result.output
    return home


def test_the_documented_query_with_a_leading_comment_runs_as_written(home):
    done = _shell(_documented('skysift query "-- Find brightest sources'), home)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    header = next(line for line in done.stdout.splitlines() if line.startswith("┃"))
    assert [c.strip() for c in header.strip("┃").split("┃")] == ["source_id", "ra", "dec", "mag_ab", "snr"]
    rows = _rows(done.stdout)
    assert len(rows) == 5 and "…" not in done.stdout  # piped: natural width, nothing cut, whatever COLUMNS says
    stored = LocalCatalog(home).arrow("SELECT source_id, ra, dec FROM sources").to_pandas().set_index("source_id")
    for source_id, ra, dec, *_ in rows:
        assert float(ra) == stored.loc[source_id, "ra"] and float(dec) == stored.loc[source_id, "dec"]
        assert len(ra.replace(".", "")) >= 12  # every digit of the double, not 6 significant ones


def test_the_documented_objects_query_gives_one_row_per_object(home):
    done = _shell(_documented('skysift query "-- Find brightest objects'), home)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    rows = _rows(done.stdout)
    assert len(rows) == 5 and len({row[0] for row in rows}) == 5
    assert [float(row[5]) for row in rows] == sorted(float(row[5]) for row in rows)


def test_the_readme_cookbook_query_with_a_leading_comment_runs(home):
    sql = _documented('skysift query "-- Find brightest sources').split('"')[1]
    result = CliRunner().invoke(cli, ["--home", str(home), "query", sql, "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "source_id,ra,dec,mag_ab,snr" and len(result.output.splitlines()) == 6


def test_several_statements_print_each_result(home):
    done = _shell('skysift query "-- how many of each\nSELECT COUNT(*) AS n_images FROM images;\n'
                  'CREATE TEMP TABLE bright AS SELECT * FROM sources WHERE snr > 50;\n'
                  'SELECT COUNT(*) AS n_bright FROM bright; SELECT COUNT(*) AS n_objects FROM objects"', home)
    assert done.returncode == 0, done.stderr
    assert re.findall(r"^statement (\d):", done.stdout, flags=re.M) == ["1", "3", "4"]  # CREATE: its effect only
    assert re.findall(r"┃ (n_\w+) ┃", done.stdout) == ["n_images", "n_bright", "n_objects"]
    counts = [int(row[0]) for row in _rows(done.stdout)]
    assert counts[0] == 8 and counts[1] > 0 and counts[2] > 0


def test_several_results_and_a_one_result_format_is_a_clear_error(home):
    result = CliRunner().invoke(cli, ["--home", str(home), "query", "--format", "csv", "SELECT 1 AS a; SELECT 2 AS b"])
    assert result.exit_code == 2
    assert "error (bad_query): --format csv writes one result" in result.output and "statements 1, 2" in result.output


def test_an_error_names_the_statement_it_stopped_at(home):
    result = CliRunner().invoke(cli, ["--home", str(home), "query", "SELECT 1 AS a; SELECT nope FROM sources"])
    assert result.exit_code == 2 and "statement 2 of 2" in result.output and "nope" in result.output


def test_csv_keeps_integers_integers_and_nulls_empty(home):
    result = CliRunner().invoke(cli, ["--home", str(home), "query", "--format", "csv",
                                      "SELECT n_sources FROM images UNION ALL SELECT NULL ORDER BY 1 NULLS FIRST"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "n_sources" and lines[1] == "" and len(lines) == 10
    assert all(re.fullmatch(r"\d+", line) for line in lines[2:])  # never 255.0


def test_json_keeps_the_types(home):
    sql = ("SELECT n_sources, center_ra, obs_time, corners_ra, uri, CAST(NULL AS INTEGER) AS nothing, "
           "CAST('nan' AS DOUBLE) AS not_a_number, SUM(n_sources) OVER () AS total FROM images ORDER BY uri LIMIT 1")
    result = CliRunner().invoke(cli, ["--home", str(home), "query", "--format", "json", sql])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    stored = LocalCatalog(home).arrow(sql).to_pylist()[0]
    assert type(row["n_sources"]) is int and type(row["total"]) is int and row["center_ra"] == stored["center_ra"]
    assert row["obs_time"] == stored["obs_time"].isoformat() and row["obs_time"].endswith("+00:00")
    assert row["corners_ra"] == stored["corners_ra"] and len(row["corners_ra"]) == 4
    assert row["nothing"] is None and row["not_a_number"] is None and isinstance(row["uri"], str)


def test_parquet_round_trips_every_type(home, tmp_path):
    sql = "SELECT * FROM sources ORDER BY source_id"
    out = tmp_path / "sources.parquet"
    result = CliRunner().invoke(cli, ["--home", str(home), "query", "--format", "parquet", "-o", str(out), sql])
    assert result.exit_code == 0, result.output
    assert pq.read_table(out).equals(LocalCatalog(home).arrow(sql))
    result = CliRunner().invoke(cli, ["--home", str(home), "query", "--format", "parquet", sql])
    assert result.exit_code == 2 and "-o FILE" in result.output


def test_sql_from_a_file_or_standard_input(home, tmp_path):
    script = tmp_path / "night.sql"
    script.write_text("-- a script\nSELECT COUNT(*) AS n FROM images;\n")
    for args, stdin in ((["-f", str(script)], None), (["-"], script.read_text()), ([], script.read_text()),
                        (["-f", "-"], script.read_text())):
        result = CliRunner().invoke(cli, ["--home", str(home), "query", "--format", "csv", *args], input=stdin)
        assert result.exit_code == 0 and result.output == "n\n8\n", (args, result.output)


def test_a_misspelt_option_is_still_an_error(home):
    result = CliRunner().invoke(cli, ["--home", str(home), "query", "SELECT 1", "--fromat", "csv"])
    assert result.exit_code == 2 and "No such option: --fromat" in result.output


@pytest.mark.parametrize("table", ["sources", "images", "alerts", "objects", "detections", "matches", "injections"])
def test_every_table_the_home_holds_is_queryable(home, table):
    result = CliRunner().invoke(cli, ["--home", str(home), "query", "--format", "json",
                                      f"SELECT COUNT(*) AS n FROM {table}"])
    assert result.exit_code == 0, result.output
    n = json.loads(result.output)[0]["n"]
    assert n > 0 or table == "alerts", table  # crossmatch and completeness wrote matches and injections


def test_athena_runs_each_statement_and_keeps_integers_integers(monkeypatch):
    aws_cli = pytest.importorskip("skysift.cli.aws")
    sent = []

    def athena(sql: str, *, stack: str) -> pd.DataFrame:  # what awswrangler returns: nullable integers
        sent.append(sql)
        return pd.DataFrame({"n_sources": pd.array([255, None], dtype="Int64")})

    monkeypatch.setattr(aws_cli, "athena_query_for", athena)
    result = CliRunner().invoke(cli, ["query", "--athena", "--format", "csv", "-- one\nSELECT n_sources FROM images"])
    assert result.exit_code == 0, result.output
    assert result.output == "n_sources\n255\n\n" and len(sent) == 1
    result = CliRunner().invoke(cli, ["query", "--athena", "SELECT 1 AS a; SELECT 2 AS b"])
    assert result.exit_code == 0 and len(sent) == 3  # Athena takes one statement per query
    assert result.output.count("255") == 2 and "statement 2:" in result.output
