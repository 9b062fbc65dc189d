"""The analysis notebook runs top to bottom on a small sample survey, shows every figure
inline (and saves it), and answers with objects, not repeated detections."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from skysift.analysis.sample import make_sample
from skysift.io.storage import list_fits
from skysift.pipeline.survey import run_local
from skysift.settings import Settings

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "sky_analysis.ipynb"
FIGURES = ["completeness_curves", "01_counts_and_depth", "02_sky_map", "03_flux_and_snr", "04_star_galaxy",
           "05_detection_efficiency", "06_cutouts", "07_variability", "08_crossmatch"]


def _text(cell) -> str:
    return "".join(out.get("text", "") for out in cell.outputs)


@pytest.mark.slow
def test_notebook_answers_every_question_with_a_figure_shown_inline(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    make_sample(tmp_path / "sky", size=384, seed=11)
    # run_local as the library's users call it: no objects table yet, the notebook builds it
    run_local(list_fits(str(tmp_path / "sky")), Settings.load(home=tmp_path / "home"), workers=2)
    for name, value in {"SKYSIFT_HOME": tmp_path / "home", "SKYSIFT_SKY": tmp_path / "sky",
                        "SKYSIFT_FIGURES": tmp_path / "figures", "SKYSIFT_INJECT_ROUNDS": "2",
                        "SKYSIFT_INJECT_STARS": "80"}.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.delenv("SKYSIFT_ATHENA_WORKGROUP", raising=False)
    monkeypatch.delenv("MPLBACKEND", raising=False)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert not any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")  # committed clean
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]

    shown = [out for cell in code for out in cell.outputs if "image/png" in out.get("data", {})]
    assert len(shown) == len(FIGURES)  # every figure displayed once, in the notebook itself
    results = "".join(out.get("data", {}).get("text/plain", "") for cell in code for out in cell.outputs
                      if "image/png" not in out.get("data", {}))
    assert "PosixPath" not in results and "Figure" not in results  # no path or repr where a figure should be
    for name in FIGURES:
        png = tmp_path / "figures" / f"{name}.png"
        assert png.exists(), name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000, name

    text = "".join(_text(cell) for cell in code)
    assert "8 measured images" in text
    assert "of the reference objects inside the images found" in text
    assert "Athena section skipped" in text
    answers = next(_text(cell) for cell in code if "brightest = catalog.sql(" in cell.source)
    brightest, extended = answers.split("most extended:")
    for listing in (brightest, extended):
        object_ids = re.findall(r"^\s*([0-9a-f]{16})\s", listing, flags=re.M)
        assert len(object_ids) == 6 and len(set(object_ids)) == 6  # one row per object, never one per epoch
