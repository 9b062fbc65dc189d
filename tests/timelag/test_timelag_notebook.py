"""The solar time-lag notebook runs the seed's steps on an emulated HelioCloud and shows each figure inline."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("s3fs")
boto3 = pytest.importorskip("boto3")
pytest.importorskip("sunpy_cloudcatalog")
nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
import heliocloud as hc  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402
from solar_series import lag_series_frames  # noqa: E402

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "solar_timelag.ipynb"
#: search (none), a raw frame, first/last aligned frames, light curves, the lag map
FIGURES = 4


def _outputs(cell, kind: str) -> str:
    return "".join(out.get("text", "") for out in cell.outputs if out.get("name") == kind)


@pytest.mark.slow
def test_notebook_searches_loads_aligns_and_maps_the_lag_with_figures_inline(tmp_path, monkeypatch):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        series = lag_series_frames(n_frames=30, shape=(48, 48), seed=11)  # two hours at 4 min
        hc.publish(boto3.client("s3", endpoint_url=endpoint, **hc.PUBLISHER), series)
        notebook = nbformat.read(NOTEBOOK, as_version=4)
        assert not any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")  # committed clean
        with hc.anonymous_reader_env(monkeypatch, endpoint, tmp_path):  # the kernel and its workers inherit it
            for name, value in {"SKYSIFT_SOLAR_BUCKET": f"s3://{hc.BUCKET}/",
                                "SKYSIFT_SOLAR_START": series.start.isoformat(),
                                "SKYSIFT_SOLAR_END": series.end.isoformat(), "SKYSIFT_SOLAR_FOV": "160,160",
                                "SKYSIFT_SOLAR_MAX_LAG": "40min", "SKYSIFT_WORKERS": "1"}.items():
                monkeypatch.setenv(name, value)
            monkeypatch.delenv("DASK_GATEWAY__ADDRESS", raising=False)
            monkeypatch.delenv("MPLBACKEND", raising=False)
            nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                    resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        server.stop()

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    shown = [out for cell in code for out in cell.outputs if "image/png" in out.get("data", {})]
    assert len(shown) == FIGURES  # every figure displayed, in the notebook itself
    plain = "".join(out.get("data", {}).get("text/plain", "") for cell in code for out in cell.outputs
                    if "image/png" not in out.get("data", {}))
    assert "Figure" not in plain and "PosixPath" not in plain
    stdout = "".join(_outputs(cell, "stdout") for cell in code)
    assert "193 A: 30 files" in stdout and "171 A: 30 files" in stdout  # found by Fido + CloudCatalog
    assert "30 frames at 193 A, 30 at 171 A, HDU 1" in stdout  # read anonymously: no credentials exist
    assert "dask.array<" in stdout  # the cube is lazy until computed
    found = re.search(r"(\d+)% of the pixels have a lag; median ([-+\d.]+) min", stdout)
    assert found and int(found[1]) >= 95
    assert 5 < float(found[2]) < 25  # the injected lags run from 0 to 30 min across the cutout
    assert "".join(_outputs(cell, "stderr") for cell in code) == ""  # no warnings, no dask chatter
