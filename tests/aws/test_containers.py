"""The worker image runs as template.yaml says: each Batch job's command, built exactly as the
template and the state machine state it, goes through ``containers/entrypoint.sh`` as a plain
process to its Python entrypoint (never to the Lambda runtime interface), against moto; and the
image installs every package those entrypoints import.

No Docker here: the entrypoint script runs on this machine with a PATH whose ``python3`` is the
test's interpreter, and ``SKYSIFT_LAMBDA_ENTRYPOINT`` points at a stub that records its arguments
in place of the base image's ``/lambda-entrypoint.sh``.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tomllib
from datetime import timedelta
from importlib import metadata
from pathlib import Path

import pytest
from aws_support import JOB_ENTRYPOINTS, ROOT, sky_file

sys.path.insert(0, str(ROOT / "tests" / "timelag"))

ENTRYPOINT = ROOT / "containers" / "entrypoint.sh"
DOCKERFILE = ROOT / "containers" / "Dockerfile"
INGEST_ASL = json.loads((ROOT / "statemachine/ingest.asl.json").read_text())
TIMELAG_ASL = json.loads((ROOT / "statemachine/timelag.asl.json").read_text())


# -- building commands as the template and the state machines state them --------------------------
def _path(document: dict, path: str):
    """``$.a.b`` in the state; ``$$.a.b`` (the context object) in the state's ``$$``."""
    value, path = (document["$$"], path[1:]) if path.startswith("$$.") else (document, path)
    for part in path.removeprefix("$.").split("."):
        value = value[part]
    return value


def states_array(expression: str, state: dict) -> list[str]:
    """Evaluate an ASL ``States.Array('literal', $.path, States.Format('{}', $.path), ...)`` against a state."""
    inner = re.fullmatch(r"States\.Array\((.*)\)", expression.strip()).group(1)
    items = re.findall(r"States\.Format\('\{\}', (\$\$?[\w.]+)\)|'((?:[^'\\]|\\.)*)'|(\$\$?[\w.]+)", inner)
    return [literal if not (path or formatted) else str(_path(state, path or formatted))
            for formatted, literal, path in items]


def ingest_state(name: str) -> dict:
    """A state of IngestImage, at the top or in its per-image Map."""
    states = INGEST_ASL["States"]
    return states.get(name) or states["Images"]["ItemProcessor"]["States"][name]


def batch_parameters(task_parameters: dict, state: dict) -> dict[str, str]:
    """A submitJob task's ``Parameters`` (``name.$`` JSONPaths evaluated), as Batch receives them."""
    return {name.removesuffix(".$"): (_path(state, value) if name.endswith(".$") else value)
            for name, value in task_parameters.items()}


def substitute_refs(command: list[str], parameters: dict[str, str]) -> list[str]:
    """Batch's ``Ref::name`` placeholders in a job definition's command, filled from the job's parameters."""
    return [re.sub(r"Ref::(\w+)", lambda m: parameters[m.group(1)], arg) for arg in command]


def job_definition(emulation, name: str) -> dict:
    """A job definition's ContainerProperties with every Ref/Sub resolved (parameter defaults,
    the emulated resources' names)."""
    return emulation.resolver.resolve(emulation.template["Resources"][name]["Properties"]["ContainerProperties"])


@pytest.fixture
def lambda_stub(tmp_path: Path) -> Path:
    """Stands in for the base image's /lambda-entrypoint.sh: records its arguments, exits 99."""
    stub = tmp_path / "lambda-entrypoint.sh"
    stub.write_text(f'#!/bin/sh\nprintf "%s\\n" "$#" "$@" > "{tmp_path}/lambda-called"\nexit 99\n')
    stub.chmod(0o755)
    return stub


def run_container(command: list[str], environment: dict[str, str], *, stub: Path, home: Path,
                  endpoint: str | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """``entrypoint.sh COMMAND...`` as the container runtime would start it, with the job's environment."""
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(home),
           "MPLCONFIGDIR": str(home / "mpl"), "SKYSIFT_LAMBDA_ENTRYPOINT": str(stub),
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           **environment}
    if endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
    return subprocess.run(["sh", str(ENTRYPOINT), *command], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _environment(container: dict) -> dict[str, str]:
    return {item["Name"]: str(item["Value"]) for item in container.get("Environment", [])}


def _no_exec_failure(done: subprocess.CompletedProcess, stub: Path) -> None:
    assert not (stub.parent / "lambda-called").exists(), "the Batch command went to the Lambda runtime interface"
    for sign in ("usage:", "Traceback", "No module named", "not found", "skysift-entrypoint:"):
        assert sign not in done.stderr, done.stderr[-3000:]


# -- DetectLarge ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_detect_large_command_from_the_state_machine_measures_the_uploaded_image(emulation, tmp_path, lambda_stub):
    key = "night-2026-01-01/large-field.fits"
    emulation.upload(sky_file(tmp_path / "sky.fits"), key)
    emulation.wait()  # the upload's own run (small route) measured it: remove its rows, the job must write them
    s3 = emulation.client("s3")
    for item in s3.list_objects_v2(Bucket=emulation.catalog_bucket, Prefix="sources/").get("Contents", []):
        s3.delete_object(Bucket=emulation.catalog_bucket, Key=item["Key"])
    summary_uri = f"s3://{emulation.catalog_bucket}/runs/container-test/summary.json"  # nothing else writes here
    state = {"source": {"bucket": emulation.raw_bucket, "key": key},
             "image": {"summary_uri": summary_uri, "info": {"hdu": 0}}, "$$": {"Execution": {"Name": "exec-1"}}}
    container = job_definition(emulation, "LargeJobDefinition")
    command = states_array(ingest_state("DetectLarge")["Parameters"]["ContainerOverrides"]["Command.$"], state)
    assert command[0] == "batch" and command[-4:] == ["--hdu", "0", "--execution", "exec-1"]

    environment = {**_environment(container), "PYTHONPATH": str(ROOT / "src")}  # this checkout's worker, as the image has it
    done = run_container(command, environment, stub=lambda_stub, home=tmp_path, endpoint=emulation.server.url)

    assert done.returncode == 0, done.stderr[-3000:]
    _no_exec_failure(done, lambda_stub)
    summary = emulation.get_json(summary_uri)
    assert summary["status"] == "ok" and summary["n_sources"] > 10
    assert summary["image_row"]["route"] == "large" and summary["image_row"]["uri"] == f"s3://{emulation.raw_bucket}/{key}"
    image_ids = emulation.read_table("sources").column("image_id").to_pylist()
    assert image_ids.count(summary["image_row"]["image_id"]) == summary["n_sources"]


def test_large_job_definitions_own_command_reaches_the_worker(emulation, tmp_path, lambda_stub):
    container = job_definition(emulation, "LargeJobDefinition")

    done = run_container(container["Command"], _environment(container), stub=lambda_stub, home=tmp_path)

    assert done.returncode == 0, done.stderr
    assert "usage: batch" in done.stdout and "--summary-uri" in done.stdout
    assert not (lambda_stub.parent / "lambda-called").exists()


# -- TimeLagAnalysis -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def series(tmp_path_factory):
    from solar_series import make_lag_series

    return make_lag_series(tmp_path_factory.mktemp("container-timelag"), n_frames=12, shape=(48, 48), seed=11)


def _timelag_command(emulation, request: dict, name: str) -> tuple[list[str], dict[str, str]]:
    """Put the request where the state machine puts it; the job's command and environment for it."""
    request_uri = f"s3://{emulation.catalog_bucket}/timelag-requests/{name}.json"
    emulation.client("s3").put_object(Bucket=emulation.catalog_bucket, Key=f"timelag-requests/{name}.json",
                                      Body=json.dumps(request).encode())
    container = job_definition(emulation, "TimeLagJobDefinition")
    parameters = batch_parameters(TIMELAG_ASL["States"]["RunWorker"]["Parameters"]["Parameters"], {"request_uri": request_uri})
    environment = {**_environment(container), "PYTHONPATH": str(ROOT / "src")}  # this checkout's worker, as the image has it
    return substitute_refs(container["Command"], parameters), environment


@pytest.mark.slow
def test_timelag_job_command_runs_the_worker_to_a_lag_map(emulation, series, tmp_path, lambda_stub):
    from solar_series import lag_request

    output = f"s3://{emulation.catalog_bucket}/timelag/container-test/lag.fits"
    command, environment = _timelag_command(emulation, lag_request(series, output, scheduler="threads"), "container-test")

    done = run_container(command, environment, stub=lambda_stub, home=tmp_path, endpoint=emulation.server.url)

    assert done.returncode == 0, done.stderr[-3000:]
    _no_exec_failure(done, lambda_stub)
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["status"] == "ok" and summary["frames"] == [12, 12]
    assert emulation.get_json(f"{output}.json") == summary


@pytest.mark.slow
def test_timelag_job_without_frames_fails_with_one_typed_line_not_an_exec_error(emulation, series, tmp_path, lambda_stub):
    from solar_series import lag_request

    later = {"start": (series.start + timedelta(days=365)).isoformat(), "end": (series.end + timedelta(days=365)).isoformat()}
    request = lag_request(series, f"s3://{emulation.catalog_bucket}/timelag/empty/lag.fits", scheduler="threads", **later)
    command, environment = _timelag_command(emulation, request, "empty")

    done = run_container(command, environment, stub=lambda_stub, home=tmp_path, endpoint=emulation.server.url)

    assert done.returncode == 2, done.stderr[-3000:]  # permanent: the job definition does not retry it
    _no_exec_failure(done, lambda_stub)
    [line] = done.stdout.strip().splitlines()
    record = json.loads(line)
    assert record["status"] == "failed" and record["reason"] == "series_not_found"
    assert record["request"] == command[-1]


# -- the Lambda path and everything else --------------------------------------------------------------
def test_each_functions_handler_goes_to_the_lambda_runtime_interface_alone(emulation, tmp_path, lambda_stub):
    for function_name, handler in emulation.handlers.items():
        done = run_container([handler], {}, stub=lambda_stub, home=tmp_path)
        assert done.returncode == 99, (function_name, done.stderr)
        assert (tmp_path / "lambda-called").read_text().split() == ["1", handler]


def test_a_command_that_is_no_known_form_fails_with_a_clear_message(tmp_path, lambda_stub):
    done = run_container(["detect", "s3://b/k.fits"], {}, stub=lambda_stub, home=tmp_path)
    assert done.returncode == 64 and "expected 'batch ARGS...'" in done.stderr
    assert not (tmp_path / "lambda-called").exists()


def test_the_batch_path_puts_the_lambda_task_root_on_the_python_path(tmp_path, lambda_stub):
    """In the image the packages live in LAMBDA_TASK_ROOT, which only the Lambda runtime adds to sys.path."""
    probe = ["python", "-c", "import os, sys; print(os.environ['PYTHONPATH']); print(sys.path)"]
    done = run_container(probe, {"LAMBDA_TASK_ROOT": str(tmp_path)}, stub=lambda_stub, home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == str(tmp_path) and str(tmp_path) in done.stdout.splitlines()[1]


# -- the image's build stage compiles skysift's extension ------------------------------------------------
def test_the_build_stages_install_compiles_the_extension_it_checks(tmp_path):
    """The build stage's ``pip install ... --target`` of what it copies, from a tree as the stage
    has it (no editable install, no build directory), gives the compiled neighbour loops, and its
    own check (``python -c "import skysift.core._loops"`` in the task root) passes: the image
    does not ship NumPy's slower loops unnoticed. (The real build also installs gcc; this machine has one.)"""
    text = DOCKERFILE.read_text()
    build = text[text.index(" AS build"):text.index("\nFROM ", text.index(" AS build"))]
    copied = re.findall(r"^COPY (.+) \$\{LAMBDA_TASK_ROOT\}/src-build/", build, re.MULTILINE)
    assert copied == ["pyproject.toml README.md", "src"], copied
    assert 'python -c "import skysift.core._loops"' in build
    source, task = tmp_path / "src-build", tmp_path / "task"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        (source / name).write_bytes((ROOT / name).read_bytes())
    subprocess.run(["cp", "-r", str(ROOT / "src"), str(source / "src")], check=True)
    for leftover in (source / "src").rglob("*.so"):  # an editable install's build, not the stage's
        leftover.unlink()
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", str(source),
                           "--target", str(task)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    check = subprocess.run([sys.executable, "-c", "import skysift.core._loops as m; print(m.__file__)"],
                           cwd=task, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr[-2000:]
    assert Path(check.stdout.strip()).is_relative_to(task)


# -- the image installs what the jobs import -----------------------------------------------------------
def dockerfile_extras() -> list[str]:
    """The extras of the project's own ``pip install ...src-build[EXTRAS]`` line."""
    [extras] = re.findall(r'pip install "\$\{LAMBDA_TASK_ROOT\}/src-build\[([\w,]*)\]"', DOCKERFILE.read_text())
    return extras.split(",")


def _requirement_name(text: str) -> tuple[str, list[str]]:
    match = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(?:\[([^\]]*)\])?", text)
    return _canonical(match.group(1)), [e.strip() for e in (match.group(2) or "").split(",") if e.strip()]


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_distributions(extras: list[str]) -> set[str]:
    """Every distribution ``pip install .[extras]`` brings in: pyproject's requirements, then their
    own requirements (with the extras asked for), as the installed metadata states them."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    todo = [_requirement_name(r) for r in project["dependencies"]]
    wanted, seen = list(extras), set()
    while wanted:
        extra = wanted.pop()
        for requirement in project["optional-dependencies"][extra]:
            name, more = _requirement_name(requirement)
            if name == "skysift":
                wanted += more
            else:
                todo.append((name, more))
    while todo:
        name, asked = todo.pop()
        if (name, tuple(asked)) in seen:
            continue
        seen.add((name, tuple(asked)))
        for requirement in metadata.requires(name) or []:
            spec, _, marker = requirement.partition(";")
            extra_of = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
            if extra_of and _canonical(extra_of.group(1)) not in {_canonical(a) for a in asked}:
                continue
            if marker and not extra_of and not _marker_holds(marker):
                continue
            todo.append(_requirement_name(spec))
    return {name for name, _ in seen}


def _marker_holds(marker: str) -> bool:
    from packaging.markers import Marker

    return Marker(marker).evaluate({"extra": ""})


def _is_optional(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """An import inside ``try: ... except ImportError`` or ``if TYPE_CHECKING:``."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError") for h in node.handlers):
            return True
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imported_modules(entry: str) -> set[str]:
    """Top-level names of the third-party modules that ``entry`` and the skysift modules it imports
    (at module level or inside functions) import."""
    package = ROOT / "src"
    third_party, seen, todo = set(), set(), [entry]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = package / (module.replace(".", "/") + ".py")
        if not path.exists():
            path = package / module.replace(".", "/") / "__init__.py"
        if not path.exists():
            continue
        tree = ast.parse(path.read_text())
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and not _is_optional(node, parents):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not _is_optional(node, parents):
                if node.level:
                    base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                    names = [prefix] + [f"{prefix}.{alias.name}" for alias in node.names]
                else:
                    names = [node.module]
            else:
                continue
            for name in names:
                if name.split(".")[0] == "skysift":
                    todo.append(name)
                    parts = name.split(".")
                    todo += [".".join(parts[:i]) for i in range(2, len(parts))]  # parent packages run first
                elif name.split(".")[0] not in sys.stdlib_module_names:
                    third_party.add(name.split(".")[0])
    return third_party


@pytest.mark.parametrize("job", sorted(JOB_ENTRYPOINTS))
def test_the_image_installs_every_package_the_jobs_entrypoint_imports(job):
    provided = installed_distributions(dockerfile_extras())
    providers = metadata.packages_distributions()
    missing = {}
    for module in sorted(imported_modules(JOB_ENTRYPOINTS[job])):
        distributions = {_canonical(d) for d in providers.get(module, [])}
        assert distributions, f"{module} is imported by {JOB_ENTRYPOINTS[job]} but not installed here either"
        if not distributions & provided:
            missing[module] = sorted(distributions)
    assert missing == {}, f"containers/Dockerfile installs [{','.join(dockerfile_extras())}]: add the extra providing these"


def test_the_functions_imports_are_installed_too():
    """The Lambda handlers (functions/*/app.py -> skysift.aws.handlers and steps) import nothing the image lacks."""
    provided = installed_distributions(dockerfile_extras())
    providers = metadata.packages_distributions()
    modules = imported_modules("skysift.aws.handlers") | imported_modules("skysift.aws.steps")
    missing = {m for m in modules if not {_canonical(d) for d in providers.get(m, [])} & provided}
    assert missing == set()


def test_the_extras_check_would_catch_the_aws_only_image():
    """The image as it was (``[aws]`` only) lacks what the time-lag worker imports."""
    provided = installed_distributions(["aws"])
    providers = metadata.packages_distributions()
    imported = imported_modules("skysift.timelag.worker")
    lacking = {m for m in imported if not {_canonical(d) for d in providers.get(m, [])} & provided}
    assert {"sunpy", "dask", "reproject"} <= lacking


def test_the_entrypoint_is_posix_sh_and_executable():
    assert os.access(ENTRYPOINT, os.X_OK)
    assert subprocess.run(["sh", "-n", str(ENTRYPOINT)], check=False).returncode == 0
    assert ENTRYPOINT.read_text().startswith("#!/bin/sh\n")
