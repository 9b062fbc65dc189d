"""Execute notebooks into ``notebooks/executed/``, outputs and figures included, for reading
without running them (``make notebooks``).

    python notebooks/execute.py [NOTEBOOK.ipynb ...]    # default: every notebooks/*.ipynb

Each notebook runs top to bottom in a fresh kernel whose working directory is
``notebooks/``, as when opened in Jupyter; ``sky_analysis.ipynb`` reads the demo survey
(``make demo``: ``./sky`` and ``./skysift-data``) unless ``SKYSIFT_HOME`` and
``SKYSIFT_SKY`` say otherwise. A cell that fails stops the notebook with its error, and
the executed copy is not written.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbclient
import nbformat

HERE = Path(__file__).resolve().parent
OUT = HERE / "executed"


def execute(path: Path, *, timeout_s: int = 1800) -> Path:
    """Run ``path`` and write its executed copy under :data:`OUT`; returns the copy's path."""
    notebook = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(notebook, timeout=timeout_s, kernel_name="python3",
                            resources={"metadata": {"path": str(HERE)}}).execute()
    OUT.mkdir(exist_ok=True)
    target = OUT / path.name
    nbformat.write(notebook, target)
    return target


def main(argv: list[str]) -> None:
    paths = [Path(a).resolve() for a in argv] or sorted(HERE.glob("*.ipynb"))
    for path in paths:
        print(f"executing {path.name} ...", flush=True)
        target = execute(path)
        figures = sum("image/png" in out.get("data", {}) for cell in nbformat.read(target, as_version=4).cells
                      for out in cell.get("outputs", []))
        print(f"wrote {target.relative_to(Path.cwd()) if target.is_relative_to(Path.cwd()) else target} "
              f"({figures} figures)")


if __name__ == "__main__":
    main(sys.argv[1:])
