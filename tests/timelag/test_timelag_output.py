"""The lag PNG: a symmetric colour scale set by the lags themselves, not by the +-max-lag search window."""

from __future__ import annotations

import io

import numpy as np
import pytest
from astropy.io import fits
from matplotlib.image import imread
from solar_series import aia_header

from skysift.timelag.align import cutout_header
from skysift.timelag.output import LagMaps, lag_colour_limit_s, lag_figure, png_bytes

MAX_LAG_S = 6 * 3600.0


def _maps(lag_s: np.ndarray) -> LagMaps:
    header = cutout_header(aia_header(), (-125.0, 250.0), (lag_s.shape[1] * 4.0, lag_s.shape[0] * 4.0), 4.0)
    return LagMaps(lag_s.astype(np.float32), np.ones_like(lag_s, dtype=np.float32), fits.Header(header),
                   {"CADENCE": (240.0, "time grid step [s]")})


def _real_lags(shape=(40, 40), seed=3) -> np.ndarray:
    """Minutes, both signs, a NaN corner and two outliers at the edge of the search window."""
    rng = np.random.default_rng(seed)
    lag = rng.choice(np.arange(-10, 11) * 60.0, size=shape)
    lag[:5, :5] = np.nan
    lag[-1, -1], lag[-1, -2] = MAX_LAG_S, -MAX_LAG_S
    return lag


def test_colour_limit_is_the_99th_percentile_of_the_absolute_lag():
    lag = _real_lags()
    assert lag_colour_limit_s(lag, 240.0) == pytest.approx(np.nanpercentile(np.abs(lag), 99))
    assert lag_colour_limit_s(lag, 240.0) == 600.0  # two outliers do not set the scale


@pytest.mark.parametrize("lag", [np.full((4, 4), np.nan), np.zeros((4, 4))])
def test_colour_limit_falls_back_when_there_is_no_lag_to_scale_to(lag):
    assert lag_colour_limit_s(lag, 240.0) == 240.0


def test_the_figure_scale_is_symmetric_and_real_lags_are_coloured():
    maps = _maps(_real_lags())
    image = lag_figure(maps, MAX_LAG_S, "t").axes[0].images[0]
    assert (image.norm.vmin, image.norm.vcenter, image.norm.vmax) == (-600.0, 0.0, 600.0)
    finite = maps.lag_s[np.isfinite(maps.lag_s) & (maps.lag_s != 0)]
    # a 10-minute lag sits at the ends of the colour scale, not 3 % away from white as on a +-6 h scale
    assert np.median(np.abs(np.ma.getdata(image.norm(finite)) - 0.5)) > 0.2


def _saturated_fraction(png: bytes) -> float:
    pixels = imread(io.BytesIO(png))[..., :3]
    chroma = pixels.max(axis=-1) - pixels.min(axis=-1)  # 0 for white, grey and black
    return float((chroma > 0.5).mean())


def test_the_png_shows_saturated_colour_where_the_lags_are():
    maps = _maps(_real_lags())
    shown = _saturated_fraction(png_bytes(maps, MAX_LAG_S, "time lag 193-171 A"))
    buffer = io.BytesIO()
    lag_figure(maps, MAX_LAG_S, "time lag 193-171 A", limit_s=MAX_LAG_S).savefig(buffer, format="png")
    as_before = _saturated_fraction(buffer.getvalue())  # the old +-6 h scale
    assert shown > 0.1 and as_before < 0.02  # strongly red or blue map, where it was all but white
