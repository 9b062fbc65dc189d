"""skysift.core.median: numpy's median, bit for bit, from a bracketed slice of the values."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from skysift.core.median import MIN_SIZE, SAMPLE_STEP, median


def same(expected, got) -> bool:
    return expected.dtype == got.dtype and np.array_equal(expected, got, equal_nan=True)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(MIN_SIZE, 40_000), seed=st.integers(0, 2**32 - 1),
       shape=st.sampled_from(["normal", "ties", "sorted", "cauchy", "half_zeros", "float64"]))
def test_median_equals_numpy_on_random_arrays(n, seed, shape):
    rng = np.random.default_rng(seed)
    values = {
        "normal": lambda: rng.normal(size=n).astype(np.float32),
        "ties": lambda: rng.integers(-3, 3, size=n).astype(np.float32),
        "sorted": lambda: np.sort(rng.normal(size=n)).astype(np.float32),
        "cauchy": lambda: rng.standard_cauchy(size=n).astype(np.float32),
        "half_zeros": lambda: np.concatenate([np.zeros(n // 2, np.float32), rng.exponential(size=n - n // 2).astype(np.float32)]),
        "float64": lambda: rng.normal(size=n),
    }[shape]()
    assert same(np.median(values), median(values))


def test_a_sample_that_misses_the_middle_still_gives_numpys_median():
    # every sampled value is the largest: the bracket holds none of the middle ranks
    values = np.zeros(100 * SAMPLE_STEP, dtype=np.float32)
    values[::SAMPLE_STEP] = 1e6
    values[1::2] = np.arange(values[1::2].size, dtype=np.float32)
    assert same(np.median(values), median(values))


def test_nan_infinity_odd_and_small_arrays_give_numpys_median():
    rng = np.random.default_rng(7)
    for n in (1, 2, MIN_SIZE - 1, MIN_SIZE, MIN_SIZE + 1, 50_001):
        values = rng.normal(size=n).astype(np.float32)
        assert same(np.median(values), median(values))
        values[n // 3] = np.inf
        assert same(np.median(values), median(values))
        values[n // 2] = np.nan
        assert same(np.median(values), median(values))
