"""Where the dask graph runs: an existing scheduler, or a local ``dask.distributed`` cluster.

``--scheduler tcp://host:8786`` attaches to any running cluster (dask-jobqueue,
dask-kubernetes, Coiled, a ``dask scheduler`` you started); without it a
``LocalCluster`` of worker processes is started for the run and shut down after.
Workers run one thread each: reprojection and FITS decoding hold the GIL for long
stretches, so processes, not threads, give the parallelism.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import dask
from distributed import Client, LocalCluster

from .errors import SchedulerUnavailable

log = logging.getLogger(__name__)


#: ``--scheduler`` values that select dask's single-machine schedulers instead of distributed.
LOCAL_SCHEDULERS = ("threads", "sync")


@contextmanager
def dask_client(scheduler: str | None = None, workers: int = 2, memory_limit: str = "auto",
                connect_timeout_s: float = 30.0) -> Iterator[Client | None]:
    """A connected :class:`distributed.Client`, closed (and its local cluster stopped) on exit.

    Parameters
    ----------
    scheduler : str, optional
        Address of an existing scheduler (``tcp://host:8786``); None starts a LocalCluster;
        ``"threads"`` or ``"sync"`` use dask's threaded or synchronous scheduler in this
        process (no distributed client: yields None) -- for debugging and small jobs.
    workers : int
        Worker processes of the LocalCluster (one thread each).
    memory_limit : str
        Per-worker memory limit of the LocalCluster, e.g. ``"4GiB"``.
    connect_timeout_s : float
        How long to wait for an existing scheduler, seconds.
    """
    if scheduler in LOCAL_SCHEDULERS:
        with dask.config.set(scheduler=scheduler, num_workers=workers):
            yield None
        return
    if scheduler:
        try:
            client = Client(scheduler, timeout=f"{connect_timeout_s}s")
        except OSError as exc:
            raise SchedulerUnavailable(f"cannot connect to the dask scheduler: {exc}", uri=scheduler) from exc
        log.info("using dask scheduler %s (%d workers)", scheduler, len(client.scheduler_info()["workers"]))
        with client:
            yield client
        return
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, memory_limit=memory_limit,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        log.info("started a local dask cluster: %d workers at %s", workers, cluster.scheduler_address)
        yield client
