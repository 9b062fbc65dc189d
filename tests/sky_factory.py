"""The tests' one writer of synthetic skies: :mod:`skysift.analysis.synthetic`'s stars and
galaxies, rendered with noise and written to a FITS file, with their truth.

Tests take it through the fixtures of ``tests/conftest.py`` (``make_sky``, ``truth_sky``) or,
in fixtures of a wider scope and in helper modules (``tests/aws/aws_support.py``), import it:
a module of its own, not a conftest, so that every test folder's import finds this one.
A given set of arguments always writes the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from skysift.analysis.synthetic import Sky, SkySpec, random_sources, render, write_fits

#: Cards every synthetic sky has unless ``header`` overrides them: a night and a band to file it under.
BASE_HEADER = {"DATE-OBS": "2026-01-01T00:00:00", "FILTER": "r"}


def write_sky(path: str | Path, *, size: int = 512, n_stars: int = 150, n_galaxies: int = 30, seed: int = 1,
              header: dict | None = None, compress: bool = False, **spec_args) -> tuple[Path, Sky, SkySpec]:
    """Render a ``size`` x ``size`` sky of stars and galaxies uniform in position and magnitude.

    ``header`` adds or overrides cards of :data:`BASE_HEADER`; ``spec_args`` are
    :class:`~skysift.analysis.synthetic.SkySpec` fields (``fwhm_px``, ``center_ra``, ...);
    ``compress`` writes a Rice tile-compressed file. Returns the path, the rendered sky
    (data, header, truth table) and its spec.
    """
    rng = np.random.default_rng(seed)
    spec = SkySpec(nx=size, ny=size, **spec_args)
    stars, galaxies = random_sources(spec, n_stars, n_galaxies, rng)
    sky = render(spec, stars, galaxies, rng, {**BASE_HEADER, **(header or {})})
    path = Path(path)
    write_fits(path, sky, compress=compress)
    return path, sky, spec
