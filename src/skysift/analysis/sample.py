"""`skysift sample`: a small synthetic survey with known truth.

Four overlapping pointings observed on two nights (eight 1024 x 1024 images) in the
r band, with a TAN-SIP WCS, a Moffat PSF whose seeing varies from image to image,
Poisson and read noise, a header zero point, stars and Sersic galaxies drawn from
one sky (so overlaps and repeat visits agree), and one transient that appears only
on the second night. ``truth.parquet`` lists every injected source.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from skysift.analysis.synthetic import SkySpec, make_wcs, render, write_fits

__all__ = [
    "FIELD_CENTER",
    "NIGHTS",
    "POINTING_OFFSETS_DEG",
    "SURVEY",
    "TRANSIENT_MAG",
    "make_sample",
]

SURVEY = "skysift-sample"
FIELD_CENTER = (150.10, 2.20)  # deg, the COSMOS field
POINTING_OFFSETS_DEG = [(-0.05, -0.05), (0.05, -0.05), (-0.05, 0.05), (0.05, 0.05)]
NIGHTS = [datetime(2026, 3, 14, 3, 0, tzinfo=UTC), datetime(2026, 3, 21, 3, 30, tzinfo=UTC)]
TRANSIENT_MAG = 18.5


def _universe(rng: np.random.Generator, n_stars: int, n_galaxies: int, half_width_deg: float) -> tuple[dict, dict]:
    ra0, dec0 = FIELD_CENTER
    def sky(n):
        return (ra0 + rng.uniform(-half_width_deg, half_width_deg, n) / np.cos(np.deg2rad(dec0)),
                dec0 + rng.uniform(-half_width_deg, half_width_deg, n))
    sra, sdec = sky(n_stars)
    gra, gdec = sky(n_galaxies)
    stars = {"ra": sra, "dec": sdec, "mag": rng.uniform(16.0, 24.0, n_stars)}
    galaxies = {"ra": gra, "dec": gdec, "mag": rng.uniform(17.0, 24.0, n_galaxies),
                "r_eff": rng.uniform(2.0, 7.0, n_galaxies), "n": rng.choice([1.0, 4.0], n_galaxies, p=[0.7, 0.3]),
                "ellip": rng.uniform(0.0, 0.6, n_galaxies), "theta": rng.uniform(0, np.pi, n_galaxies)}
    return stars, galaxies


def _on_image(spec: SkySpec, catalog: dict) -> dict:
    wcs = make_wcs(spec)
    # the SIP polynomial diverges far outside a small image: invert it only near the image
    x, y = wcs.wcs_world2pix(catalog["ra"], catalog["dec"], 0)
    near = (x > -50) & (y > -50) & (x < spec.nx + 49) & (y < spec.ny + 49)
    x, y = np.full_like(x, -1e9), np.full_like(y, -1e9)
    if near.any():
        x[near], y[near] = wcs.all_world2pix(catalog["ra"][near], catalog["dec"][near], 0)
    inside = (x > -10) & (y > -10) & (x < spec.nx + 9) & (y < spec.ny + 9)
    out = {k: np.asarray(v)[inside] for k, v in catalog.items() if k not in ("ra", "dec")}
    out["x"], out["y"] = x[inside], y[inside]
    return out


def make_sample(out_dir: str | Path, *, size: int = 1024, seed: int = 42) -> list[Path]:
    """Write the sample survey into ``out_dir``; returns the image paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    half_width = 0.05 + size * 0.4 / 3600.0 / 2 + 0.01
    stars, galaxies = _universe(rng, n_stars=1200, n_galaxies=400, half_width_deg=half_width)
    transient = {"ra": np.array([FIELD_CENTER[0] - 0.05 / np.cos(np.deg2rad(FIELD_CENTER[1]))]),
                 "dec": np.array([FIELD_CENTER[1] - 0.04]), "mag": np.array([TRANSIENT_MAG])}
    paths, truth_rows = [], []
    number = 0
    for night_index, night in enumerate(NIGHTS):
        for pointing, (dra, ddec) in enumerate(POINTING_OFFSETS_DEG, start=1):
            number += 1
            spec = SkySpec(nx=size, ny=size, fwhm_px=float(rng.uniform(2.6, 4.0)), sky_counts=float(rng.uniform(150, 300)),
                           center_ra=FIELD_CENTER[0] + dra / np.cos(np.deg2rad(FIELD_CENTER[1])),
                           center_dec=FIELD_CENTER[1] + ddec, rotation_deg=float(rng.uniform(-1, 1)))
            spec = replace(spec, zero_point=28.0 + float(rng.normal(0, 0.05)))
            on_stars = _on_image(spec, stars)
            if night_index == 1:
                extra = _on_image(spec, transient)
                on_stars = {k: np.concatenate([on_stars[k], extra[k]]) for k in on_stars}
            on_galaxies = _on_image(spec, galaxies)
            when = night + timedelta(minutes=5 * pointing)
            header = {"SURVEY": SURVEY, "TELESCOP": "skysift-sim", "INSTRUME": "simcam", "FILTER": "r",
                      "DATE-OBS": when.strftime("%Y-%m-%dT%H:%M:%S"), "EXPTIME": 60.0, "FIELD": f"P{pointing}",
                      "OBJECT": f"COSMOS-P{pointing}"}
            sky = render(spec, on_stars, on_galaxies, rng, header)
            path = out / f"field_{number:03d}.fits"
            write_fits(path, sky)
            paths.append(path)
            kinds = sky.truth["kind"].astype(object)
            if night_index == 1 and len(extra["x"]):
                kinds[len(on_stars["x"]) - len(extra["x"]) : len(on_stars["x"])] = "transient"
            for i in range(len(kinds)):
                truth_rows.append({"file": path.name, "kind": str(kinds[i]), **{k: float(sky.truth[k][i]) for k in ("x", "y", "ra", "dec", "mag", "flux", "r_eff_px", "snr_true")}})
    pq.write_table(pa.Table.from_pylist(truth_rows), out / "truth.parquet")
    return paths
