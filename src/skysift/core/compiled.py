"""skysift's compiled pixel loops, :mod:`skysift.core._loops`, or None where they were not built.

The extension is optional (``pyproject.toml``): an install without a C compiler goes on, and
detection and photometry run the same loops in NumPy (and SEP), which are the reference the
compiled ones are tested against (``tests/core/test_loops.py``), bit for bit.
"""

from __future__ import annotations

from types import ModuleType

loops: ModuleType | None
try:
    from skysift.core import _loops as loops
except ImportError:  # built without a compiler
    loops = None

__all__ = ["loops"]
