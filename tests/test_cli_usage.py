"""Wrong usage ends in one line and exit status 2; a failing command never prints a traceback.

The walk introspects the ``skysift`` click group, so a command or option added later is
covered without touching this file: every command and subcommand gets an unknown
option, each required parameter left out, each option without its value, and each typed
parameter a malformed and an out-of-range value. Output off a terminal is never wrapped,
so the tests hold for any terminal width, path length or user.

Convention (see :mod:`skysift.cli.terminal`): a usage error is click's message (``Usage:``,
``Try ...``, a blank line, then one ``Error: ...`` line; for a few parser errors click
prints the ``Error:`` line alone); a runtime error is exactly one
line ``error (reason): message``; exit status 2 for what the user must fix, 1 for what
running again may cure or is a bug.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from sky_factory import write_sky
from skysift import errors
from skysift.catalog.query import LocalCatalog
from skysift.cli.main import cli
from skysift.cli.terminal import HDUType, OutputFile
from skysift.io import fits as fitsio
from skysift.settings import ALERT_RULES

_SCRIPT = Path(sys.executable).with_name("skysift")
SKYSIFT = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "skysift.cli.main"]


# -- what an error must look like ------------------------------------------------------------
def assert_one_line_error(result, status: int = 2, reason: str | None = None) -> str:
    """The output is one error line (after click's usage lines for a usage error); returns it."""
    output = result.output
    assert result.exit_code == status, output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in output
    lines = output.rstrip("\n").splitlines()
    error_lines = [line for line in lines if line.startswith(("Error: ", "error ("))]
    assert len(error_lines) == 1 and lines[-1] == error_lines[0], output
    if lines[-1].startswith("Error: "):  # click's usage error
        assert status == 2 and reason is None
        usage = lines[0].startswith("Usage: skysift") and lines[1].startswith("Try ") and len(lines) == 4
        assert usage or len(lines) == 1, output  # click leaves out the usage for some parser errors
    else:
        assert len(lines) == 1, output
        if reason is not None:
            assert lines[0].startswith(f"error ({reason}): "), output
    return lines[-1]


# -- the walk over every command ---------------------------------------------------------------
def _commands(command: click.Command = cli, path: tuple[str, ...] = ()):
    yield path, command
    if isinstance(command, click.Group):
        context = click.Context(command)
        for name in command.list_commands(context):  # lazily registered commands included
            yield from _commands(command.get_command(context, name), (*path, name))


def _number_type(param: click.Parameter) -> bool:
    return isinstance(param.type, click.types.IntParamType | click.types.FloatParamType)


def _valid(param: click.Parameter) -> str:
    """A value click accepts for ``param`` ({image}, {tmp} filled in by the test)."""
    kind = param.type
    if isinstance(kind, OutputFile):
        return "{tmp}/out.fits"
    if isinstance(kind, click.Path):
        return "{tmp}" if not kind.file_okay else "{image}"
    if isinstance(kind, click.Choice):
        return str(kind.choices[0])
    if isinstance(kind, click.DateTime):
        return datetime(2011, 2, 15).strftime(kind.formats[0])
    if isinstance(kind, HDUType):
        return "0"
    if _number_type(param):
        low = getattr(kind, "min", None)
        return str(low + 1 if low is not None else 1)
    return {"center": "0,0", "fov": "500,500", "cadence": "4min", "max_lag": "6h", "sql": "SELECT 1"}.get(
        param.name, "{image}")


def _malformed(param: click.Parameter) -> str | None:
    """A value of the wrong form for ``param``, or None when any text is allowed."""
    kind = param.type
    if isinstance(kind, OutputFile):
        return "{image}/x.png"  # below a file: no directory can be made there
    if isinstance(kind, click.Path):
        return "{tmp}/does-not-exist" if kind.exists else ("{image}" if not kind.file_okay else None)
    if isinstance(kind, click.Choice):
        return "nonsense"
    if isinstance(kind, click.DateTime):
        return "yesterday"
    if isinstance(kind, HDUType):
        return "-1"
    if _number_type(param) or param.callback is not None or kind.name not in ("text", "boolean"):
        return "not-a-value"  # numbers, parsed types (pairs, durations, sizes) and checked strings
    return None


def _out_of_range(param: click.Parameter) -> list[str]:
    kind = param.type
    if not isinstance(kind, click.IntRange | click.FloatRange):
        return []
    values = []
    if kind.min is not None:
        values.append(str(kind.min if kind.min_open else kind.min - 1))
    if kind.max is not None:
        values.append(str(kind.max if kind.max_open else kind.max + 1))
    return values


def _takes_no_value(param: click.Parameter) -> bool:
    return isinstance(param, click.Option) and (param.is_flag or param.count)


def _argv(path: tuple[str, ...], command: click.Command, *tail: str, without: click.Parameter | None = None,
          end: tuple[str, ...] = ()) -> list[str]:
    """``path``, valid values of the required parameters (but ``without``), ``tail`` before the
    arguments and ``end`` after them."""
    required = [p for p in command.params if p.required and p is not without]
    options = [t for p in required if isinstance(p, click.Option) for t in (p.opts[0], _valid(p))]
    arguments = [_valid(p) for p in required if isinstance(p, click.Argument)]
    return [*path, *options, *tail, *arguments, *end]


def _cases():
    """(id, argv with placeholders) of every wrong usage of every command."""
    for path, command in _commands():
        required = [p for p in command.params if p.required]

        def argv(*tail: str, path=path, command=command, **where) -> list[str]:
            return _argv(path, command, *tail, **where)

        name = " ".join(path) or "skysift"
        yield f"{name}: unknown option", argv("--no-such-option")
        for param in required:
            if not isinstance(command, click.Group):
                yield f"{name}: without {param.name}", argv(without=param)
        for param in command.params:
            if not isinstance(param, click.Option) or param.hidden:
                continue
            option = param.opts[0]
            if _takes_no_value(param):
                yield f"{name} {option}=value", argv(f"{option}=value")
                continue
            yield f"{name} {option} without its value", argv(end=(option,))
            bad = _malformed(param)
            if bad is not None:
                yield f"{name} {option} {bad}", argv(option, bad, without=param)
            for value in _out_of_range(param):
                yield f"{name} {option} {value}", argv(option, value, without=param)
        for param in command.params:
            if isinstance(param, click.Argument) and (bad := _malformed(param)) is not None:
                others = [_valid(p) for p in command.params if isinstance(p, click.Argument) and p.required
                          and p is not param]
                yield f"{name} {param.name.upper()} {bad}", [*path, *others, bad]


CASES = dict(_cases())


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("usage")
    image, _sky, _spec = write_sky(tmp / "one.fits", size=64, n_stars=5, n_galaxies=0, seed=3)
    return {"tmp": str(tmp), "image": str(image)}


def _invoke(argv: list[str], files: dict[str, str]):
    """``skysift --home TMP/home ARGV`` in this process, placeholders filled in."""
    filled = [token.format(**files) for token in argv]
    return CliRunner().invoke(cli, ["--home", files["tmp"] + "/home", *filled], prog_name="skysift")


def test_the_walk_reaches_every_command_and_kind_of_mistake():
    names = {" ".join(path) for path, _ in _commands()}
    assert {"run", "plot", "alerts", "alerts subscribe", "emulate", "timelag", "completeness"} <= names
    assert len(CASES) > 150
    assert any(key.endswith("without its value") for key in CASES)
    assert "run -j 0" in CASES and "alerts --rule nonsense" in CASES and "completeness --rounds 0" in CASES


@pytest.mark.parametrize("argv", CASES.values(), ids=CASES.keys())
def test_every_wrong_usage_is_one_error_line_and_exit_2(argv, files):
    result = _invoke(argv, files)
    assert_one_line_error(result, 2)


# -- the cases of issue 11, and what a user meets at runtime ---------------------------------------
@pytest.mark.parametrize(("argv", "expected"), [
    (["run", "{image}", "--hdu", "1"], "--hdu': there is no HDU 1"),
    (["inspect", "{image}", "--hdu", "-3"], "--hdu'"),
    (["plot", "{image}", "-o", "{tmp}/missing_dir/x.png"], "does not exist"),
    (["plot", "{image}", "-o", "{tmp}"], "is a directory"),
    (["completeness", "{image}", "--rounds", "0"], "--rounds"),
    (["completeness", "{image}", "--fwhm", "-2"], "--fwhm"),
    (["sample", "{tmp}/tiny", "--size", "16"], "--size"),
    (["emulate", "--param", "Foo"], "expected NAME=VALUE"),
    (["run", "{tmp}", "-j", "0"], "-j"),
    (["alerts", "--rule", "nonsense"], "'high_snr', 'high_flux', 'new_source'"),
    (["ingest"], "exactly one of"),
    (["ingest", "bucket/prefix"], "expected s3://bucket/prefix"),
    (["alerts", "subscribe"], "exactly one of --sqs"),
    (["alerts", "subscribe", "--sqs", "my-queue"], "is not an SQS ARN"),
    (["crossmatch", "--gaia", "--radius", "-1arcsec"], "must be positive"),
    (["run", "{image}", "--max-memory", "lots"], "is not a size"),
])
def test_wrong_usage_named_in_issue_11_is_a_usage_error(argv, expected, files):
    result = _invoke(argv, files)
    assert expected in assert_one_line_error(result, 2)


@pytest.mark.parametrize(("argv", "reason", "expected"), [
    (["emulate", "--param", "NoSuchParam=1"], "bad_config", "its parameters are Stage, "),
    (["emulate", "--param", "SurveyMaxConcurrency=0"], "bad_config", "outside [1, 10000]"),
    (["run", "{image}", "--threshold", "0"], "bad_config", "threshold_sigma"),
    (["inspect", "{tmp}/missing.fits"], "not_found", "missing.fits"),
    (["inspect", "{image}", "--hdu", "7"], "no_image_hdu", "there is no HDU 7"),
])
def test_runtime_mistakes_are_one_typed_line_and_exit_2(argv, reason, expected, files):
    result = _invoke(argv, files)
    assert expected in assert_one_line_error(result, 2, reason)


class _Flaky(errors.SkysiftError):
    reason = "flaky"
    transient = True


@pytest.mark.parametrize(("raised", "status", "reason"), [
    (ValueError("boom\nsecond line"), 1, "internal_error"),
    (_Flaky("try again later"), 1, "flaky"),
    (OSError(28, "No space left on device"), 1, "io_error"),
    (PermissionError(13, "Permission denied"), 2, "io_error"),
])
def test_an_unexpected_exception_is_one_line_with_its_exit_status(raised, status, reason, files, monkeypatch):
    def broken(*args, **kwargs):
        raise raised

    monkeypatch.setattr(fitsio, "inspect_image", broken)
    result = _invoke(["inspect", "{image}"], files)
    line = assert_one_line_error(result, status, reason)
    if reason == "internal_error":
        assert "ValueError: boom" in line and "-vv" in line


def test_hdu_missing_in_a_directory_fails_each_image_and_the_run_goes_on(tmp_path):
    runner = CliRunner()
    assert runner.invoke(cli, ["sample", str(tmp_path / "sky"), "--size", "64"]).exit_code == 0
    result = runner.invoke(cli, ["--home", str(tmp_path / "home"), "run", str(tmp_path / "sky"), "--hdu", "1",
                                 "-j", "1"])
    assert result.exit_code == 1, result.output  # images failed; the run itself did not stop
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    images = LocalCatalog(tmp_path / "home").sql("SELECT status, error_reason FROM images")
    assert len(images) == 8
    assert set(images["status"]) == {"failed"} and set(images["error_reason"]) == {"no_image_hdu"}


def test_a_small_sample_renders(tmp_path):
    """`sample --size 128` crashed in the SIP inversion of far-away sources."""
    result = CliRunner().invoke(cli, ["sample", str(tmp_path / "sky"), "--size", "128"])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "sky").glob("field_*.fits"))) == 8


def test_alert_rules_are_the_ones_the_rules_produce():
    from skysift.cli.aws import KINDS

    assert set(KINDS) == set(ALERT_RULES) == {"high_snr", "high_flux", "new_source"}


# -- what a user runs: processes, pipes, no AWS credentials ---------------------------------------
def _environment(tmp: Path, *, region: str | None = None, **extra: str) -> dict[str, str]:
    """This environment without AWS credentials, region or configuration (no network call is tried)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "SKYSIFT_")) and k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    env.update(AWS_CONFIG_FILE=str(tmp / "no-aws-config"), AWS_SHARED_CREDENTIALS_FILE=str(tmp / "no-aws-credentials"),
               AWS_EC2_METADATA_DISABLED="true", COLUMNS="40", **extra)
    if region:
        env["AWS_DEFAULT_REGION"] = region
    return env


def _skysift(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*SKYSIFT, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize(("argv", "region", "reason"), [
    (["run", "s3://skysift-no-such-bucket/prefix/"], None, "aws_credentials"),
    (["inspect", "s3://skysift-no-such-bucket/night/x.fits"], None, "aws_credentials"),
    (["ingest", "s3://skysift-no-such-bucket/prefix/"], None, "aws_region"),
    (["query", "--athena", "SELECT 1"], None, "aws_region"),
    (["alerts", "subscribe", "--email", "someone@example.org"], "eu-west-1", "aws_credentials"),
])
def test_aws_commands_without_credentials_or_region_end_in_one_line(argv, region, reason, tmp_path):
    done = _skysift("--home", str(tmp_path / "home"), *argv, env=_environment(tmp_path, region=region), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert re.fullmatch(rf"error \({reason}\): [^\n]+\n", done.stderr), done.stderr


def test_timelag_to_s3_without_credentials_fails_before_any_work(tmp_path):
    pytest.importorskip("sunpy")
    done = _skysift("--home", str(tmp_path / "home"), "timelag", "--channel-a", "193", "--channel-b", "171",
                    "--start", "2011-02-15T00:00", "--end", "2011-02-15T01:00", "--center", "0,0",
                    "--index", str(tmp_path / "no-index"), "-o", "s3://skysift-no-such-bucket/lag.fits",
                    env=_environment(tmp_path), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    # the index does not exist: had the output not been checked first, that would be the error
    assert re.fullmatch(r"error \(aws_credentials\): [^\n]+\n", done.stderr), done.stderr


def test_usage_error_in_a_process_is_click_usage_and_exit_2(files, tmp_path):
    done = _skysift("plot", files["image"], "-o", str(tmp_path / "missing_dir" / "x.png"),
                    env=_environment(tmp_path), cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1].startswith("Error: Invalid value for '-o' / '--output': directory ")


def test_messages_stay_one_line_in_a_pipe_whatever_the_path_length(tmp_path):
    """Item 1 of issue 11: stdout is a pipe, COLUMNS=40, paths of 250+ characters."""
    root = tmp_path.resolve() / ("long-directory-name-" * 6) / ("and-another-one-" * 6)
    sky, home, overview = root / "sky", root / "home", root / "overview.png"
    env = _environment(tmp_path)
    assert len(str(overview)) > 250

    done = _skysift("sample", str(sky), "--size", "64", env=env, cwd=tmp_path)
    assert f"wrote 8 images and truth.parquet to {sky}" in done.stdout.splitlines(), done.stdout

    done = _skysift("--home", str(home), "run", str(sky), "-j", "1", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("8 ok, 0 indexed, 0 failed; ") and line.endswith(f"tables in {home}") for line in lines)
    assert any(line.startswith(f"run report: {home}/runs/run-") for line in lines), done.stdout
    assert not any("\x1b[" in line for line in lines)  # no terminal codes in a pipe

    done = _skysift("--home", str(home), "plot", "--overview", "-o", str(overview), env=env, cwd=tmp_path)
    assert re.fullmatch(rf"wrote {re.escape(str(overview))} \(\d+ sources, 8 images\)\n", done.stdout), done.stdout

    done = _skysift("--home", str(home), "inspect", str(root / "missing.fits"), env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == f"error (not_found): {root / 'missing.fits'}: no such file or object\n"


@pytest.mark.parametrize("argv", [
    ["query", "--athena", "--stack", "skysift-nowhere", "SELECT 1"],
    ["ingest", "s3://bucket/prefix/", "--stack", "skysift-nowhere"],
    ["alerts", "subscribe", "--email", "someone@example.org", "--stack", "skysift-nowhere"],
])
def test_aws_commands_without_the_stack_name_it(argv, files, monkeypatch):
    moto = pytest.importorskip("moto")
    for name, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    for name in ("SKYSIFT_STACK", "SKYSIFT_SURVEY_STATE_MACHINE_ARN", "SKYSIFT_ALERT_TOPIC_ARN"):
        monkeypatch.delenv(name, raising=False)
    with moto.mock_aws():
        result = _invoke(argv, files)
    assert "no CloudFormation stack 'skysift-nowhere'" in assert_one_line_error(result, 2, "bad_config")


def test_lazy_commands_say_what_their_modules_say_and_load_on_use():
    """The --help text of a lazily imported command is its own docstring's first line."""
    from skysift.cli.main import LAZY_ALERT_COMMANDS, LAZY_COMMANDS, alerts, cli

    for group, lazy in ((cli, LAZY_COMMANDS), (alerts, LAZY_ALERT_COMMANDS)):
        for name, (_, short_help, _) in lazy.items():
            command = group.get_command(click.Context(group), name)
            assert command is not None and command.name == name
            assert (command.help or "").strip().splitlines()[0] == short_help


def test_version_and_help_import_no_cloud_or_solar_package():
    code = ("import sys; from click.testing import CliRunner; from skysift.cli.main import cli; "
            "r = CliRunner().invoke(cli, ['--help']); assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in ('boto3', 'sunpy', 'dask', 'astropy.units', 'duckdb') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
