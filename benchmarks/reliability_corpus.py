"""Regenerate the corpus table of docs/RELIABILITY.md from a real run.

    .venv/bin/python benchmarks/reliability_corpus.py > /tmp/table.md

Builds the hostile corpus (tests/hostile/corpus.py), runs it through ``skysift run`` and the
emulated AWS system, each in a child process capped at 4 GiB of address space, and prints the
per-file table (designed verdict, route and verdict on each path, agreement) and the memory figures.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hostile.report import main

if __name__ == "__main__":
    sys.exit(main())
