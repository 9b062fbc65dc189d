"""The compiled loops (``skysift.core._loops``) give what NumPy's and SEP's give.

``photometry._foreign`` and ``photometry.corrected_cutout`` laid out by ``photometry._lay_out``
are the reference of the neighbour correction, ``sep.sum_circann`` of the local pedestal's
annuli, ``sep.flux_radius`` of the half-light radius, ``detection._BoxMosaic.gather`` in NumPy of the companion search's mosaic: the compiled loops must give the same kinds, the same mosaics and the
same counts, bit for bit, on any segmentation map, companions, mask, dtypes and boxes (on or off
the image), and the whole measurement must be the same with them or without them.
"""

from __future__ import annotations

import os
import platform

import numpy as np
import pytest
import sep
from hypothesis import given, settings
from hypothesis import strategies as st

from skysift.core import detection, photometry
from skysift.core.detection import detect
from skysift.settings import DetectionSettings, PhotometrySettings

_loops = photometry._loops
needs_extension = pytest.mark.skipif(_loops is None, reason="skysift.core._loops was not built (no compiler)")


@pytest.mark.skipif(os.environ.get("CI") != "true", reason="a machine without a compiler runs NumPy's loops")
def test_the_extension_is_built_where_the_tests_run_in_ci():
    assert _loops is not None, "skysift.core._loops was not built: photometry runs NumPy's slower loops"


@st.composite
def _scenes(draw):
    """A small image with labelled blobs, companions inside some, maybe a mask, and sources on it."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    ny, nx = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    segmap = np.zeros((ny, nx), dtype=draw(st.sampled_from([np.int16, np.int32, np.int64, np.uint16])))  # (uint16: read generically)
    labels = draw(st.integers(0, 6))
    for label in range(1, labels + 1):
        cy, cx, r = rng.uniform(0, ny), rng.uniform(0, nx), rng.uniform(0.5, 8)
        yy, xx = np.mgrid[:ny, :nx]
        segmap[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = label
    companions = None
    if draw(st.booleans()):
        companions = (rng.uniform(size=(ny, nx)) < 0.15) & (segmap != 0) | (rng.uniform(size=(ny, nx)) < 0.02)
    mask = (rng.uniform(size=(ny, nx)) < 0.1) if draw(st.booleans()) else None
    data = rng.normal(size=(ny, nx)).astype(draw(st.sampled_from([np.float32, np.float64])))
    if draw(st.booleans()):
        data[rng.uniform(size=(ny, nx)) < 0.05] = np.nan
    error = (np.broadcast_to(np.float32(1.5), (ny, nx)) if draw(st.booleans())
             else rng.uniform(0.5, 2, size=(ny, nx)).astype(np.float32))
    n = draw(st.integers(1, 12))
    own = rng.integers(0, labels + 1, n)
    x, y = rng.uniform(-6, nx + 6, n), rng.uniform(-6, ny + 6, n)
    half = rng.uniform(0.0, 15.0, n)
    sx, sy = x + rng.normal(0, 1, n), y + rng.normal(0, 1, n)
    if draw(st.booleans()):  # centres on quarter pixels: the mirror (2 sx - x) falls on halves, which round to even
        sx, sy = np.round(sx * 4) / 4, np.round(sy * 4) / 4
    if draw(st.booleans()):  # a centre far off the image, or not finite
        sx[0] = draw(st.sampled_from([1e300, -1e300, 2.0**53, np.nan, np.inf]))
    return data, error, mask, segmap, companions, own, x, y, half, (sx, sy)


@needs_extension
@settings(max_examples=300, deadline=None)
@given(_scenes())
def test_foreign_is_numpys(scene):
    _data, _error, _mask, segmap, companions, own, x, y, half, _centres = scene
    expected = [photometry._foreign(segmap, int(o), float(cx), float(cy), float(h), companions)
                for o, cx, cy, h in zip(own, x, y, half, strict=True)]
    assert photometry._foreign_kinds(segmap, companions, own, x, y, half).tolist() == expected


@needs_extension
def test_foreign_of_a_position_that_is_not_finite_is_another_sources():
    segmap = np.zeros((5, 5), np.int32)
    kinds = photometry._foreign_kinds(segmap, None, [0, 0, 0], [np.nan, 1.0, 1.0], [1.0, np.inf, 1.0],
                                      [1.0, 1.0, np.nan])
    assert kinds.tolist() == [photometry.FOREIGN_SOURCE] * 3


@needs_extension
@settings(max_examples=300, deadline=None)
@given(_scenes())
def test_the_compiled_mosaic_is_numpys(scene):
    data, error, mask, segmap, companions, own, x, y, half, centres = scene
    boxes = [photometry._cutout_box(cx, cy, h, data.shape) for cx, cy, h in zip(x, y, half, strict=True)]
    kept = [k for k, box in enumerate(boxes) if box.size > 0]
    if not kept:
        return
    layout = photometry._Layout.of([boxes[k] for k in kept])
    cuts = (photometry.corrected_cutout(data, error, mask, segmap, int(own[k]), float(x[k]), float(y[k]),
                                        float(half[k]), companions=companions,
                                        centre=(float(centres[0][k]), float(centres[1][k])))
            for k in kept)
    with np.errstate(invalid="ignore"):  # NumPy's cast of a centre far off to an index warns (no index either way)
        expected = photometry._lay_out(layout, cuts, masked=mask is not None)
    got = photometry._fill_compiled(layout, data, error, mask, (segmap, companions), own[kept],
                                    (centres[0][kept], centres[1][kept]))
    for name in ("data", "error", "mask", "neighbour", "skipped", "dx", "dy"):
        a, b = getattr(got, name), getattr(expected, name)
        if b is None:
            assert a is None, name
        else:
            assert a.dtype == b.dtype, name
            np.testing.assert_array_equal(a, b, err_msg=name)


@needs_extension
def test_a_box_beyond_the_image_or_the_mosaic_is_refused_not_written():
    data = np.zeros((10, 10), np.float32)
    segmap = np.zeros((10, 10), np.int32)
    out = [np.zeros((4, 4), np.float32), np.ones((4, 4), np.float32), None, np.zeros((4, 4), bool),
           np.zeros((4, 4), bool)]

    def fill(x0, x1, ox):
        column = [np.array([v], np.int64) for v in (0, x0, x1, 0, 4, ox, 0)]
        _loops.fill(data, data, None, segmap, None, *column, np.zeros(1), np.zeros(1), *out)

    fill(0, 4, 0)  # fits
    for x0, x1, ox in [(0, 11, 0), (-1, 3, 0), (0, 4, 1), (0, 4, -1)]:
        with pytest.raises(ValueError, match="not within"):
            fill(x0, x1, ox)
    with pytest.raises(TypeError, match="segmap"):
        _loops.fill(data, data, None, segmap.astype(np.float32), None, *[np.zeros(1, np.int64)] * 7,
                     np.zeros(1), np.zeros(1), *out)
    with pytest.raises(TypeError, match="out_data"):
        _loops.fill(data, data, None, segmap, None, *[np.zeros(1, np.int64)] * 7, np.zeros(1), np.zeros(1),
                     np.zeros((4, 4)), *out[1:])


def _sep_annuli(data, error, flags, x, y, rin, rout):
    """SEP's two calls that ``photometry._annulus_sums`` makes in one pass."""
    data, error, flags = (np.ascontiguousarray(a) for a in (data, error, flags))
    total, total_err, flag = sep.sum_circann(data, x, y, rin, rout, err=error, mask=flags, subpix=1)
    return total, total_err, flag, sep.sum_circann(flags, x, y, rin, rout, subpix=1)[0]


def _compiled_annuli(data, error, flags, x, y, rin, rout):
    got = photometry._annulus_sums(data, error, flags, x, y, rin, rout)
    assert photometry._loops is not None
    return got


@needs_extension
@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), ny=st.integers(1, 50), nx=st.integers(1, 50), n=st.integers(1, 20),
       fraction=st.floats(0.0, 1.0), quantized=st.booleans(), strided=st.booleans(),
       dtypes=st.tuples(st.sampled_from([np.float32, np.float64]), st.sampled_from([np.float32, np.float64])),
       spoiled=st.booleans())
def test_the_pedestal_annuli_are_seps(seed, ny, nx, n, fraction, quantized, strided, dtypes, spoiled):
    """Sums, errors, flags and the flagged pixels' count, bit for bit; on pixel-centre boundaries
    too (centres and radii on quarter pixels put pixel centres exactly on a circle, where SEP's
    strict comparisons and oversampling limits decide), with pixels that are not finite."""
    rng = np.random.default_rng(seed)
    width = 2 * nx if strided else nx
    flags = rng.uniform(size=(ny, width)) < fraction
    data = rng.normal(0, 10, (ny, width)).astype(dtypes[0])
    error = rng.uniform(0.1, 3, (ny, width)).astype(dtypes[1])
    if spoiled:
        data[rng.uniform(size=data.shape) < 0.03] = np.nan
        data[rng.uniform(size=data.shape) < 0.03] = np.inf
    if strided:  # views every other column, as slices of bigger maps are
        flags, data, error = flags[:, ::2], data[:, ::2], error[:, ::2]
    x, y = rng.uniform(-15, nx + 15, n), rng.uniform(-15, ny + 15, n)
    rin = rng.uniform(0, 12, n)
    rout = rin + rng.uniform(0, 12, n)
    if quantized:
        x, y, rin, rout = (np.round(v * 4) / 4 for v in (x, y, rin, rout))
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = _sep_annuli(data, error, flags, x, y, rin, rout)
    got = _compiled_annuli(data, error, flags, x, y, rin, rout)
    for name, a, b in zip(("sum", "error", "flag", "count"), got, expected, strict=True):
        assert a.dtype == b.dtype, name
        np.testing.assert_array_equal(a, b, err_msg=name)


@needs_extension
def test_outputs_must_be_writable_and_of_their_type():
    segmap, one = np.zeros((5, 5), np.int32), np.ones(1)
    frozen = np.empty(1, np.int8)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        _loops.foreign(segmap, None, np.zeros(1, np.int64), one, one, one, frozen)
    with pytest.raises(TypeError, match="out: a contiguous 1-D int8 array"):
        _loops.foreign(segmap, None, np.zeros(1, np.int64), one, one, one, np.empty(1, np.int16))
    data, flags = np.ones((8, 8), np.float32), np.zeros((8, 8), bool)
    with pytest.raises(TypeError, match="out_flag: a contiguous 1-D int16 array"):
        _loops.annulus_sums(data, data, flags, one * 4, one * 4, one, one * 3, np.empty(1), np.empty(1),
                            np.empty(1, np.int32), np.empty(1))


@needs_extension
def test_flags_must_be_bool():
    """NumPy's ``&`` and ``~`` of a uint8 map are bitwise and SEP sums its values: the loops,
    which read any nonzero byte as set, take bool maps only (what skysift passes them)."""
    data, flags = np.ones((8, 8), np.float32), np.zeros((8, 8), np.uint8)
    one = [np.array([4.0])] * 2
    with pytest.raises(TypeError, match="flags"):
        _loops.annulus_sums(data, data, flags, *one, np.array([1.0]), np.array([3.0]), np.empty(1), np.empty(1),
                            np.empty(1, np.int16), np.empty(1))
    with pytest.raises(TypeError, match="companions"):
        _loops.foreign(np.zeros((8, 8), np.int32), flags, np.zeros(1, np.int64), *one, np.array([2.0]),
                       np.empty(1, np.int8))


@needs_extension
def test_pedestal_annuli_of_centres_off_the_image_or_not_finite_are_seps_and_bad_radii_are_refused():
    shape = (20, 30)
    data, error, flags = np.ones(shape, np.float32), np.ones(shape, np.float32), np.zeros(shape, bool)
    flags[5:9, 10:20] = True
    x = np.array([np.nan, np.inf, -np.inf, 1e300, -1e300, -40.0, 70.0, 15.0, 15.0])
    y = np.array([5.0, 5.0, 5.0, 5.0, 5.0, 10.0, 10.0, np.nan, 6.0])
    if platform.machine().lower() not in ("x86_64", "amd64"):  # SEP's cast of a NaN or huge box bound is the
        x, y = x[5:7], y[5:7]  # CPU's: 0 or saturated on ARM, INT64_MIN on x86 (which the loop copies)
    rin, rout = np.full(len(x), 2.0), np.full(len(x), 6.0)
    with np.errstate(invalid="ignore", divide="ignore"):  # SEP's own arithmetic on what is not finite
        expected = _sep_annuli(data, error, flags, x, y, rin, rout)
        got = _compiled_annuli(data, error, flags, x, y, rin, rout)
    for name, a, b in zip(("sum", "error", "flag", "count"), got, expected, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)
    # a flagged pixel 4.295 px from the centre, inside rin = 5 but within SEP's 0.7072 px of it:
    # SEP looks at it (HASMASKED), though it holds none of the annulus
    ring = np.zeros(shape, bool)
    ring[6, 10] = True
    centre = ([10.0], [10.295], [5.0], [9.0])
    expected, got = _sep_annuli(data, error, ring, *centre), _compiled_annuli(data, error, ring, *centre)
    assert expected[2][0] & sep.APER_HASMASKED and expected[3][0] == 0.0
    for name, a, b in zip(("sum", "error", "flag", "count"), got, expected, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)
    for bad_rin, bad_rout in [(-1.0, 2.0), (3.0, 2.0), (np.nan, 2.0)]:
        with pytest.raises(Exception, match="invalid aperture parameters"):
            _sep_annuli(data, error, flags, [5.0], [5.0], [bad_rin], [bad_rout])
        with pytest.raises(ValueError, match="not 0 <= rin <= rout"):
            _compiled_annuli(data, error, flags, [5.0], [5.0], [bad_rin], [bad_rout])


def _sep_radii(data, mask, x, y, rmax, frac, normflux, subpix):
    """SEP's call that ``photometry._flux_radius`` replaces: radii and flags."""
    mask = None if mask is None else np.ascontiguousarray(mask)
    return sep.flux_radius(np.ascontiguousarray(data), x, y, rmax, frac, normflux=normflux, mask=mask, subpix=subpix)


def _compiled_radii(data, mask, x, y, rmax, frac, normflux, subpix):
    radius, flag = np.empty(len(x)), np.empty(len(x), np.int16)
    _loops.flux_radius(data, mask, *(np.asarray(v, np.float64) for v in (x, y, rmax, normflux)), frac, subpix,
                       radius, flag)
    return radius, flag


@needs_extension
@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), ny=st.integers(1, 60), nx=st.integers(1, 60), n=st.integers(1, 20),
       dtype=st.sampled_from([np.float32, np.float64]), masked=st.booleans(), strided=st.booleans(),
       quantized=st.booleans(), wide=st.booleans(), spoiled=st.booleans(),
       frac=st.sampled_from([0.5, 1.0, 0.2, 0.0]), subpix=st.sampled_from([1, 3, 5]))
def test_the_half_light_radii_are_seps(seed, ny, nx, n, dtype, masked, strided, quantized, wide, spoiled, frac, subpix):
    """Radii and flags bit for bit: with a mask or not, centres on and off the image, on quarter
    pixels (pixel centres exactly on a bin's edge), growth curves of bins narrower than a pixel's
    diagonal (every pixel sampled) and wider (``wide``: SEP's fmod test decides which pixels),
    pixels and normalizing fluxes that are not finite or not positive."""
    rng = np.random.default_rng(seed)
    width = 2 * nx if strided else nx
    data = rng.normal(0, 5, (ny, width)).astype(dtype)
    yy, xx = np.mgrid[:ny, :width]
    data += (200 * np.exp(-((xx - width / 2) ** 2 + (yy - ny / 2) ** 2) / 8.0)).astype(dtype)
    if spoiled:
        data[rng.uniform(size=data.shape) < 0.03] = np.nan
    mask = rng.uniform(size=(ny, width)) < 0.1 if masked else None
    if strided:
        data = data[:, ::2]
        mask = None if mask is None else mask[:, ::2]
    x, y = rng.uniform(-10, nx + 10, n), rng.uniform(-10, ny + 10, n)
    rmax = rng.uniform(50, 120, n) if wide else rng.uniform(0.1, 25, n)
    if quantized:
        x, y, rmax = (np.round(v * 4) / 4 for v in (x, y, rmax))
    if platform.machine().lower() not in ("x86_64", "amd64"):  # rmax 0: SEP's bin of an infinite distance is
        rmax = np.where(rmax > 0, rmax, 0.25)  # the CPU's cast (x86's INT64_MIN, which its arithmetic wraps to 0)
    normflux = rng.uniform(-50, 2000, n)
    normflux[rng.uniform(size=n) < 0.2] = np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = _sep_radii(data, mask, x, y, rmax, frac, normflux, subpix)
        got = _compiled_radii(data, mask, x, y, rmax, frac, normflux, subpix)
    for name, a, b in zip(("radius", "flag"), got, expected, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)


@needs_extension
@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="SEP's cast of an infinity is the CPU's")
def test_half_light_radii_of_rmax_0_are_seps():
    """rmax 0: SEP's bins are 0 wide, every pixel's bin an infinite (or NaN) distance over 0, which
    its x86 build adds to bin 0; a pixel that is not finite makes the radius NaN."""
    data = np.arange(100, dtype=np.float32).reshape(10, 10)
    spoiled = data.copy()
    spoiled[5, 5] = np.nan
    centre = (np.array([5.0, 5.0]), np.array([5.0, 2.0]), np.zeros(2), 0.5, np.array([100.0, np.nan]), 3)
    for image in (data, spoiled):
        with np.errstate(invalid="ignore", divide="ignore"):
            expected, got = _sep_radii(image, None, *centre), _compiled_radii(image, None, *centre)
        for name, a, b in zip(("radius", "flag"), got, expected, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=name)


@needs_extension
def test_half_light_radii_of_what_sep_refuses_are_refused():
    data, one = np.ones((10, 10), np.float32), np.array([5.0])
    with pytest.raises(Exception, match="invalid aperture parameters"):
        _sep_radii(data, None, one, one, np.array([-1.0]), 0.5, one, 3)
    with pytest.raises(ValueError, match="rmax"):
        _compiled_radii(data, None, one, one, np.array([-1.0]), 0.5, one, 3)
    with pytest.raises(ValueError, match="subpix"):
        _compiled_radii(data, None, one, one, one, 0.5, one, 0)
    with pytest.raises(TypeError, match="mask"):
        _compiled_radii(data, np.zeros((10, 10), np.uint8), one, one, one, 0.5, one, 3)


@needs_extension
@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), ny=st.integers(1, 40), nx=st.integers(1, 40), n=st.integers(1, 10),
       margin=st.integers(0, 4), image_dtype=st.sampled_from([np.float32, np.float64, np.bool_]),
       label_dtype=st.sampled_from([np.int16, np.int32, np.int64, np.uint16]), labelled=st.booleans())
def test_the_compiled_box_mosaic_is_numpys(seed, ny, nx, n, margin, image_dtype, label_dtype, labelled):
    rng = np.random.default_rng(seed)
    image = (rng.uniform(size=(ny, nx)) < 0.5 if image_dtype is np.bool_
             else rng.normal(size=(ny, nx)).astype(image_dtype))
    segmap = rng.integers(0, 4, (ny, nx)).astype(label_dtype)
    x0, y0 = rng.integers(0, nx, n), rng.integers(0, ny, n)
    x1, y1 = x0 + rng.integers(0, nx - x0), y0 + rng.integers(0, ny - y0)  # inclusive, within the image
    mosaic = detection._BoxMosaic(x0, x1, y0, y1, image.shape, margin=margin)
    labels = rng.integers(0, 4, n)
    args = (image, segmap, labels) if labelled else (image,)
    got = mosaic.gather(*args)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(detection, "_loops", None)
        expected = mosaic.gather(*args)
    np.testing.assert_array_equal(got[0], expected[0])
    assert got[0].dtype == expected[0].dtype == np.float32
    if not labelled:
        assert got[1] is None and expected[1] is None
        return
    for a, b in zip(got[1], expected[1], strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


@needs_extension
def test_a_box_mosaic_beyond_the_image_is_refused_not_written():
    image, segmap = np.zeros((10, 10), np.float32), np.zeros((10, 10), np.int32)
    out = np.zeros((4, 4), np.float32)

    def column(*values):
        return np.array(values, dtype=np.int64)

    _loops.paste(image, out, column(0), column(3), column(0), column(3), column(0), column(0), 0)  # fits
    for x1, ox, margin in [(10, 0, 0), (3, 1, 0), (3, 0, 1)]:
        with pytest.raises(ValueError, match="not within"):
            _loops.paste(image, out, column(0), column(x1), column(0), column(3), column(ox), column(0), margin)
    with pytest.raises(ValueError, match="margin"):
        _loops.paste(image, out, column(0), column(3), column(0), column(3), column(0), column(0), 2**62 - 1)
    with pytest.raises(ValueError, match="not within"):  # a place far beyond the mosaic: refused, no sum overflows
        _loops.paste(image, out, column(0), column(3), column(0), column(3), column(2**62), column(0), 0)
    counts = np.zeros(1, np.int64)
    with pytest.raises(ValueError, match="not within"):
        _loops.own_pixels(segmap, column(0), column(0), column(10), column(0), column(3), counts, None, None)
    with pytest.raises(ValueError, match="too short"):
        _loops.own_pixels(segmap, column(0), column(0), column(3), column(0), column(3), counts,
                          np.zeros(3, np.int64), np.zeros(3, np.int64))


def _crowded(seed: int, size: int = 160) -> np.ndarray:
    """Unit white noise and 120 Gaussian stars, many within a few pixels of another."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    frame = rng.normal(0.0, 1.0, (size, size))
    for x, y, flux in zip(rng.uniform(2, size - 2, 120), rng.uniform(2, size - 2, 120), 10 ** rng.uniform(2, 4.3, 120),
                          strict=True):
        frame += flux / (2 * np.pi * 1.4**2) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.4**2))
    return frame.astype(np.float32)


@needs_extension
@pytest.mark.parametrize("masked", [False, True])
def test_a_crowded_frame_is_detected_and_measured_the_same_with_the_compiled_loops_or_numpys(monkeypatch, masked):
    frame = _crowded(11)
    mask = None
    if masked:
        mask = np.zeros(frame.shape, bool)
        mask[40:44, :] = mask[:, 90:92] = True
        frame[mask] = 0.0

    def measured() -> tuple[detection.Detections, dict[str, np.ndarray]]:
        found = detect(frame, np.float32(1.0), mask, DetectionSettings(), noise_factor=1.0, segmentation_map=True)
        return found, photometry.measure(frame, found.objects, np.ones(frame.shape, np.float32), mask,
                                         PhotometrySettings(), segmap=found.segmap, seg_ids=found.seg_ids,
                                         companions=found.companions)

    found, compiled = measured()
    monkeypatch.setattr(photometry, "_loops", None)
    monkeypatch.setattr(detection, "_loops", None)
    numpy_found, numpys = measured()
    assert found.companions.any() and len(compiled["x"]) > 50
    np.testing.assert_array_equal(found.companions, numpy_found.companions)
    assert compiled.keys() == numpys.keys()
    for name, values in numpys.items():
        np.testing.assert_array_equal(compiled[name], values, err_msg=name)
