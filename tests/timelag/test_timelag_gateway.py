"""``--gateway``: a new dask-gateway cluster for the run, its workers told what to install.

The gateway is real: ``dask-gateway-server`` in a subprocess with its in-process backend
(scheduler and workers are started inside the gateway's process, the client talks to
them over TLS through the gateway's proxy, as it would to Kubernetes pods). Options
objects are built from the specification a server publishes.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from importlib import metadata
from pathlib import Path

import pytest
from astropy.io import fits
from click.testing import CliRunner

dask_gateway = pytest.importorskip("dask_gateway")
server_options = pytest.importorskip("dask_gateway_server.options")

from skysift.cli.timelag import timelag_command  # noqa: E402
from skysift.timelag.cluster import (  # noqa: E402
    EXTRA_PIP_PACKAGES,
    WORKER_DISTRIBUTIONS,
    close_gateway,
    configure_gateway_options,
    dask_client,
    worker_requirements,
)
from skysift.timelag.errors import InvalidRequest  # noqa: E402

GATEWAY_CONFIG = """
from dask_gateway_server.options import Integer, Mapping, Options

c.DaskGateway.backend_class = "dask_gateway_server.backends.inprocess.InProcessBackend"
c.DaskGateway.address = "127.0.0.1:0"
c.DaskGateway.log_level = "WARN"
c.Proxy.address = "127.0.0.1:{port}"
c.Backend.cluster_options = Options(
    Integer("worker_cores", default=1, min=1, max=2),
    Mapping("environment", {{}}),
    handler=lambda options: {{"worker_cores": options.worker_cores, "environment": options.environment}},
)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, process: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dask-gateway-server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/api/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)  # the server is starting: poll again
    raise RuntimeError("dask-gateway-server did not become healthy")


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory):
    """A dask-gateway server on loopback (in-process backend), stopped after the module."""
    folder = tmp_path_factory.mktemp("gateway")
    port = _free_port()
    config = folder / "dask_gateway_config.py"
    config.write_text(GATEWAY_CONFIG.format(port=port))
    log = (folder / "gateway.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "dask_gateway_server", "-f", str(config)], cwd=folder,
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def _published_options(*fields):
    """What a dask-gateway client receives: the server's options specification, parsed by the client."""
    spec = server_options.Options(*fields).get_specification()
    return dask_gateway.options.Options._from_spec(spec)


def test_timelag_runs_on_a_new_gateway_cluster_whose_workers_are_told_what_to_install(
        small_lag_series, gateway_url, tmp_path):
    out = tmp_path / "lag.fits"
    args = ["--channel-a", "193", "--channel-b", "171",
            "--start", small_lag_series.start.isoformat(), "--end", small_lag_series.end.isoformat(),
            "--center", "-125,250", "--fov", "160,160", "--cadence", "4min", "--max-lag", "40min",
            "--index", str(small_lag_series.home), "--gateway", gateway_url, "--workers", "1",
            "--gateway-option", "worker_cores=2", "--no-progress", "-o", str(out)]

    result = CliRunner(mix_stderr=False).invoke(timelag_command, args)

    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    cluster = summary["cluster"]
    requirements = worker_requirements()
    assert cluster["kind"] == "dask-gateway" and cluster["install"] == "environment"
    assert cluster["worker_requirements"] == requirements and f"sunpy[map]=={metadata.version('sunpy')}" in requirements
    # what the gateway itself recorded for the (now stopped) cluster
    gateway = dask_gateway.Gateway(gateway_url)
    try:  # the gateway marks a cluster stopped a moment after its client has shut it down
        deadline, report = time.monotonic() + 30, None
        while report is None and time.monotonic() < deadline:
            report = next((c for c in gateway.list_clusters(status="stopped") if c.name == cluster["name"]), None)
            time.sleep(0 if report else 0.2)
    finally:
        close_gateway(gateway)
    assert report is not None, f"the gateway never listed cluster {cluster['name']} as stopped"
    assert report.options["worker_cores"] == 2
    assert report.options["environment"][EXTRA_PIP_PACKAGES] == " ".join(requirements)
    # the map is the one the local pipeline computes
    local = CliRunner().invoke(timelag_command, [*args[:args.index("--gateway")], "--scheduler", "sync",
                                                 "--no-progress", "-o", str(tmp_path / "local.fits")])
    assert local.exit_code == 0
    assert (fits.getdata(out) == fits.getdata(tmp_path / "local.fits")).all()


def test_gateway_workers_import_skysift_from_the_shipped_package(gateway_url):
    info: dict = {}
    with dask_client(gateway=gateway_url, workers=1, cluster_info=info) as client:
        origins = client.run(lambda: importlib.util.find_spec("skysift.timelag.lag").origin)
    assert info["shipped"] == ["skysift"]
    assert all("skysift.zip" in origin for origin in origins.values())  # not the gateway machine's install


def test_a_gateway_without_an_environment_option_gets_the_pip_plugin():
    options = _published_options(server_options.Integer("worker_cores", default=1, min=1, max=4),
                                 server_options.String("image", default="daskgateway/dask-gateway"))
    plan = configure_gateway_options(options, {"image": "pangeo/base-notebook:2024.01.10"}, ["sunpy==7.0.5"])
    assert plan.install == "pip-plugin" and plan.requirements == ["sunpy==7.0.5"]
    assert plan.options == {"worker_cores": 1, "image": "pangeo/base-notebook:2024.01.10"}


def test_packages_a_user_already_asked_for_are_kept():
    options = _published_options(server_options.Mapping("environment", {}))
    plan = configure_gateway_options(options, {"environment": {EXTRA_PIP_PACKAGES: "astroquery", "X": "1"}},
                                     ["sunpy==7.0.5", "astroquery"])
    assert plan.options["environment"] == {EXTRA_PIP_PACKAGES: "astroquery sunpy==7.0.5", "X": "1"}


@pytest.mark.parametrize(("overrides", "message"), [
    ({"worker_memory": 8}, "no cluster option 'worker_memory'; it offers: worker_cores, environment"),
    ({"worker_cores": 99}, "worker_cores=99 rejected"),
])
def test_unknown_or_invalid_gateway_options_name_what_the_gateway_accepts(overrides, message):
    options = _published_options(server_options.Integer("worker_cores", default=1, min=1, max=4),
                                 server_options.Mapping("environment", {}))
    with pytest.raises(InvalidRequest, match=message):
        configure_gateway_options(options, overrides, [])


def _gateway_args(series, out, gateway="http://127.0.0.1:9") -> list[str]:
    return ["--channel-a", "193", "--channel-b", "171", "--start", series.start.isoformat(),
            "--end", series.end.isoformat(), "--center", "-125,250", "--index", str(series.home),
            "--gateway", gateway, "--scheduler-timeout", "5s", "-o", str(out)]


def test_without_dask_gateway_installed_the_error_says_what_to_install(small_lag_series, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "dask_gateway", None)  # as if it were not installed
    result = CliRunner(mix_stderr=False).invoke(timelag_command, _gateway_args(small_lag_series, tmp_path / "x.fits"))
    assert result.exit_code == 2
    assert result.stderr.startswith("error (missing_dependency): --gateway needs the dask-gateway client")


def test_an_unreachable_gateway_is_a_transient_error(small_lag_series, tmp_path):
    result = CliRunner(mix_stderr=False).invoke(timelag_command, _gateway_args(small_lag_series, tmp_path / "x.fits"))
    assert result.exit_code == 1  # running again may work
    assert result.stderr.startswith("error (gateway_unavailable): ")


def _imports(module: str, seen: set[str]) -> set[str]:
    """Top-level names of the packages ``module`` imports, following skysift's own modules."""
    if module in seen:
        return set()
    seen.add(module)
    path = Path(importlib.util.find_spec(module).origin)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            target = f"{base}.{node.module}" if node.module else base
            out |= _imports(target, seen) if importlib.util.find_spec(target) else set()
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("skysift."):
            out |= _imports(node.module, seen)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            out |= {alias.name.split(".")[0] for alias in node.names}
    return out


def test_worker_requirements_cover_every_package_the_tasks_import():
    seen: set[str] = set()
    names = set().union(*(_imports(f"skysift.timelag.{m}", seen) for m in ("frames", "align", "cube", "lag")))
    third_party = {n for n in names if n not in sys.stdlib_module_names and n not in ("skysift", "__future__")}
    distributions = {d.lower() for name in third_party for d in metadata.packages_distributions().get(name, [name])}
    asked = {name.split("[")[0] for name in WORKER_DISTRIBUTIONS}
    assert distributions - asked <= {"dask"}  # the worker image brings dask (and distributed)
    assert {"sunpy", "reproject", "astropy", "scipy", "fsspec"} <= distributions
