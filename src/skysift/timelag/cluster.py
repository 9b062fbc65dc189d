"""Where the dask graph runs: a local cluster, an existing scheduler, or a new dask-gateway cluster.

* ``--scheduler tcp://host:8786`` attaches to any running cluster (dask-jobqueue,
  dask-kubernetes, Coiled, a ``dask scheduler`` you started);
* ``--gateway URL`` asks a dask-gateway server (HelioCloud's and Pangeo's Daskhub run
  one) for a new cluster, as the seed workflow's ``Gateway().new_cluster()`` does, and
  tells its workers what to install (:func:`worker_requirements`); the cluster is shut
  down after the run;
* without either, a ``LocalCluster`` of worker processes is started for the run.

Workers run one thread each locally: reprojection and FITS decoding hold the GIL for
long stretches, so processes, not threads, give the parallelism.

Gateway workers come from an image that has dask and distributed (the gateway checks
their versions against the client's) but maybe not sunpy or reproject. What they need
is installed at the client's versions: through the cluster's ``environment`` option as
``EXTRA_PIP_PACKAGES`` when the gateway offers one (the dask and Pangeo images install
it before the worker starts), else with distributed's :class:`~distributed.PipInstall`
plugin. skysift itself is shipped as a zip of this installed package
(:meth:`distributed.Client.upload_file`), so no index has to publish it.
"""

from __future__ import annotations

import logging
import os
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import dask
from distributed import Client, LocalCluster

from skysift.timelag.errors import (
    GatewayUnavailable,
    InvalidRequest,
    MissingDependency,
    SchedulerUnavailable,
)

__all__ = [
    "ENVIRONMENT_OPTION",
    "EXTRA_PIP_PACKAGES",
    "LOCAL_SCHEDULERS",
    "WORKER_DISTRIBUTIONS",
    "GatewayPlan",
    "close_gateway",
    "configure_gateway_options",
    "dask_client",
    "gateway_client",
    "package_zip",
    "parse_cluster_options",
    "worker_requirements",
]

log = logging.getLogger(__name__)


#: ``--scheduler`` values that select dask's single-machine schedulers instead of distributed.
LOCAL_SCHEDULERS = ("threads", "sync")

#: Distributions the graph's tasks import (frames, align, cube, lag and the skysift modules they
#: use), pinned on gateway workers to the client's versions. dask and distributed are not in it:
#: they come with the worker image, which the gateway requires to match the client.
WORKER_DISTRIBUTIONS = ("numpy", "scipy", "astropy", "sunpy[map]", "reproject", "fsspec", "s3fs")
#: Environment variable the dask/Pangeo worker images pip-install before the worker starts.
EXTRA_PIP_PACKAGES = "EXTRA_PIP_PACKAGES"
#: Cluster option (a mapping of environment variables) that carries it, when the gateway offers one.
ENVIRONMENT_OPTION = "environment"
#: Default waits, seconds: for an existing scheduler; for a new gateway cluster's first worker
#: (a pod to schedule, an image to pull, packages to install).
SCHEDULER_TIMEOUT_S, GATEWAY_TIMEOUT_S = 30.0, 600.0


def worker_requirements() -> list[str]:
    """pip requirements that let a bare dask worker run the time-lag tasks: ``name==version`` as installed here."""
    out = []
    for name in WORKER_DISTRIBUTIONS:
        base = name.split("[", 1)[0]
        try:
            out.append(f"{name}=={metadata.version(base)}")
        except metadata.PackageNotFoundError:  # e.g. s3fs without the s3 extra: local frames only
            log.debug("%s is not installed here: not asked of the workers", base)
    return out


def _coerce(text: str) -> Any:
    """A ``--gateway-option`` value: int, float, true/false, else the string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_cluster_options(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["worker_cores=2", "image=pangeo/base-notebook:2024.1"]`` -> ``{"worker_cores": 2, "image": ...}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidRequest(f"a gateway option is KEY=VALUE, got {item!r}")
        out[key.strip()] = _coerce(value)
    return out


@dataclass(frozen=True)
class GatewayPlan:
    """What is asked of the gateway: the cluster options sent and how the workers get their packages.

    ``install`` is ``"environment"`` (``EXTRA_PIP_PACKAGES`` in the cluster's environment option)
    or ``"pip-plugin"`` (:class:`distributed.PipInstall` registered once the client connects).
    """

    options: dict[str, Any]
    requirements: list[str]
    install: str
    shipped: list[str] = field(default_factory=lambda: ["skysift"])


def configure_gateway_options(options: Any, overrides: Mapping[str, Any], requirements: list[str]) -> GatewayPlan:
    """Apply ``overrides`` and the worker requirements to a gateway's cluster ``options`` (in place).

    ``options`` is the :class:`dask_gateway.options.Options` the server published;
    unknown names and invalid values raise :class:`InvalidRequest` listing what the
    gateway accepts. Requirements the user already put in ``EXTRA_PIP_PACKAGES`` are kept.
    """
    available = list(options.keys())
    for key, value in overrides.items():
        try:
            options[key] = value
        except KeyError:
            raise InvalidRequest(
                f"the gateway has no cluster option {key!r}; it offers: {', '.join(available) or 'none'}") from None
        except (TypeError, ValueError) as exc:
            raise InvalidRequest(f"gateway option {key}={value!r} rejected: {exc}") from exc
    if ENVIRONMENT_OPTION in available:
        environment = dict(options[ENVIRONMENT_OPTION] or {})
        present = environment.get(EXTRA_PIP_PACKAGES, "").split()
        environment[EXTRA_PIP_PACKAGES] = " ".join(dict.fromkeys([*present, *requirements]))
        options[ENVIRONMENT_OPTION] = environment
        install = "environment"
    else:
        install = "pip-plugin"
    return GatewayPlan({key: options[key] for key in available}, list(requirements), install)


def package_zip(directory: str | os.PathLike[str]) -> Path:
    """A zip of this installed skysift package (Python sources) in ``directory``, for :meth:`Client.upload_file`."""
    root = Path(__file__).resolve().parents[1]  # .../skysift
    target = Path(directory) / "skysift.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".typed"):
                archive.write(path, Path("skysift") / path.relative_to(root))
    return target


@contextmanager
def gateway_client(address: str, workers: int, cluster_options: Mapping[str, Any] | None = None,
                   connect_timeout_s: float = GATEWAY_TIMEOUT_S,
                   cluster_info: dict[str, Any] | None = None) -> Iterator[Client]:
    """A client of a new cluster on the dask-gateway server at ``address``, shut down on exit.

    Authentication follows dask's configuration (``gateway.auth.type``: ``jupyterhub``
    on HelioCloud, with ``JUPYTERHUB_API_TOKEN``). ``cluster_options`` override the
    gateway's published options (``image``, ``worker_cores``, ...). What was asked of
    the gateway (:class:`GatewayPlan`) is logged and, with the cluster's name, added to
    ``cluster_info`` when given.
    """
    try:
        from dask_gateway import Gateway, GatewayClusterError, GatewayServerError
    except ImportError as exc:
        raise MissingDependency(
            f"--gateway needs the dask-gateway client: pip install 'skysift[solar]' (or dask-gateway) ({exc})") from exc
    unreachable = (OSError, GatewayServerError, GatewayClusterError, TimeoutError)
    gateway = Gateway(address)
    try:
        try:
            options = gateway.cluster_options()
        except unreachable as exc:
            raise GatewayUnavailable(f"cannot reach the dask-gateway server: {exc}", uri=address) from exc
        plan = configure_gateway_options(options, cluster_options or {}, worker_requirements())
        log.info("dask-gateway %s: new cluster with %s; workers install %s (%s)", address, plan.options,
                 " ".join(plan.requirements), plan.install)
        try:
            cluster = gateway.new_cluster(options)
        except unreachable as exc:
            raise GatewayUnavailable(f"the dask-gateway server did not start a cluster: {exc}", uri=address) from exc
        try:
            with tempfile.TemporaryDirectory(prefix="skysift-gateway-") as scratch:
                cluster.scale(workers)
                with cluster.get_client() as client:
                    try:
                        client.wait_for_workers(1, timeout=connect_timeout_s)
                    except TimeoutError as exc:
                        raise GatewayUnavailable(f"no worker of cluster {cluster.name} joined within "
                                                 f"{connect_timeout_s:g} s", uri=address) from exc
                    if plan.install == "pip-plugin" and plan.requirements:
                        from distributed import PipInstall

                        client.register_plugin(PipInstall(plan.requirements), name="skysift-requirements")
                    client.upload_file(str(package_zip(scratch)))
                    if cluster_info is not None:
                        cluster_info.update(kind="dask-gateway", address=address, name=cluster.name,
                                            options=plan.options, worker_requirements=plan.requirements,
                                            install=plan.install, shipped=plan.shipped)
                    log.info("dask-gateway cluster %s ready (%d workers)", cluster.name,
                             len(client.scheduler_info()["workers"]))
                    yield client
        finally:
            cluster.close()  # shuts the cluster down on the gateway, and closes its own Gateway
            close_gateway(cluster.gateway)
    finally:
        close_gateway(gateway)


def close_gateway(gateway: Any) -> None:
    """Close a ``dask_gateway.Gateway`` for good.

    ``Gateway.__del__`` closes it again, which raises (``Accessing the loop property while
    the loop is not running``) once the event loop it shares with the other gateway
    objects has stopped: dask-gateway 2026.3 with distributed 2026.8. ``__del__`` skips a
    gateway without a loop runner, so the closed one loses its reference to it.
    """
    if "_loop_runner" in gateway.__dict__ and gateway._loop_runner.is_started():
        gateway.close()
    gateway.__dict__.pop("_loop_runner", None)


@contextmanager
def dask_client(scheduler: str | None = None, workers: int = 2, memory_limit: str = "auto",
                connect_timeout_s: float | None = None, *, gateway: str | None = None,
                cluster_options: Mapping[str, Any] | None = None,
                cluster_info: dict[str, Any] | None = None) -> Iterator[Client | None]:
    """A connected :class:`distributed.Client`, closed (and its cluster stopped) on exit.

    Parameters
    ----------
    scheduler : str, optional
        Address of an existing scheduler (``tcp://host:8786``); None starts a LocalCluster;
        ``"threads"`` or ``"sync"`` use dask's threaded or synchronous scheduler in this
        process (no distributed client: yields None) -- for debugging and small jobs.
    workers : int
        Worker processes of the LocalCluster (one thread each), or workers of the gateway cluster.
    memory_limit : str
        Per-worker memory limit of the LocalCluster, e.g. ``"4GiB"``.
    connect_timeout_s : float, optional
        How long to wait for an existing scheduler (default :data:`SCHEDULER_TIMEOUT_S`), or for
        the first gateway worker (default :data:`GATEWAY_TIMEOUT_S`), seconds.
    gateway : str, optional
        Address of a dask-gateway server: a new cluster is started there (:func:`gateway_client`).
    cluster_options : mapping, optional
        The gateway cluster's options (``image``, ``worker_cores``, ...).
    cluster_info : dict, optional
        Filled with what was started or used (``kind``, address, gateway cluster name,
        options sent and the workers' requirements), for the run's summary.
    """
    info = cluster_info if cluster_info is not None else {}
    if gateway and scheduler:
        raise InvalidRequest("give either --scheduler or --gateway, not both")
    if gateway:
        with gateway_client(gateway, workers, cluster_options, connect_timeout_s or GATEWAY_TIMEOUT_S, info) as client:
            yield client
        return
    if scheduler in LOCAL_SCHEDULERS:
        info.update(kind=scheduler)
        with dask.config.set(scheduler=scheduler, num_workers=workers):
            yield None
        return
    if scheduler:
        try:
            client = Client(scheduler, timeout=f"{connect_timeout_s or SCHEDULER_TIMEOUT_S}s")
        except OSError as exc:
            raise SchedulerUnavailable(f"cannot connect to the dask scheduler: {exc}", uri=scheduler) from exc
        log.info("using dask scheduler %s (%d workers)", scheduler, len(client.scheduler_info()["workers"]))
        info.update(kind="scheduler", address=scheduler)
        with client:
            yield client
        return
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, memory_limit=memory_limit,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        log.info("started a local dask cluster: %d workers at %s", workers, cluster.scheduler_address)
        info.update(kind="local", workers=workers)
        yield client
