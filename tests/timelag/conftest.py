"""Fixtures of the time-lag tests: synthetic solar series on disk, indexed, and a real dask cluster."""

from __future__ import annotations

import pytest
from solar_series import LagSeries, RotationSeries, make_lag_series, make_rotation_series


@pytest.fixture(scope="session")
def lag_series(tmp_path_factory: pytest.TempPathFactory) -> LagSeries:
    return make_lag_series(tmp_path_factory.mktemp("lagseries"))


@pytest.fixture(scope="session")
def rotation_series(tmp_path_factory: pytest.TempPathFactory) -> RotationSeries:
    return make_rotation_series(tmp_path_factory.mktemp("rotation"))


@pytest.fixture(scope="session")
def local_cluster():
    """A real dask.distributed cluster: 2 worker processes talking TCP."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, protocol="tcp",
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        yield client


@pytest.fixture(scope="session")
def small_lag_series(tmp_path_factory: pytest.TempPathFactory) -> LagSeries:
    """A short two-channel series for the entrypoint tests (CLI, worker, Fido)."""
    return make_lag_series(tmp_path_factory.mktemp("smallseries"), n_frames=12, shape=(48, 48), seed=11)
