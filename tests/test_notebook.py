"""The analysis notebook runs top to bottom on a small sample survey and saves its figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from skysift.runner import run_local
from skysift.sample import make_sample
from skysift.settings import Settings
from skysift.storage import list_fits

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "sky_analysis.ipynb"
FIGURES = ["01_counts_and_depth", "02_sky_map", "03_flux_and_snr", "04_star_galaxy", "05_detection_efficiency",
           "06_cutouts", "07_crossmatch", "completeness_curves"]


@pytest.mark.slow
def test_notebook_answers_every_question_with_a_figure(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    make_sample(tmp_path / "sky", size=384, seed=11)
    run_local(list_fits(str(tmp_path / "sky")), Settings.load(home=tmp_path / "home"), workers=2)
    for name, value in {"SKYSIFT_HOME": tmp_path / "home", "SKYSIFT_SKY": tmp_path / "sky",
                        "SKYSIFT_FIGURES": tmp_path / "figures", "SKYSIFT_INJECT_ROUNDS": "2",
                        "SKYSIFT_INJECT_STARS": "80"}.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.delenv("SKYSIFT_ATHENA_WORKGROUP", raising=False)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    for name in FIGURES:
        png = tmp_path / "figures" / f"{name}.png"
        assert png.exists(), name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000, name
    text = "".join(out.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs)
    assert "8 measured images" in text
    assert "of the reference objects inside the images found" in text
    assert "Athena section skipped" in text
