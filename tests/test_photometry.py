"""Windowed positions stay on their own source, neighbours are corrected in every aperture (issue 14)."""

from __future__ import annotations

import weakref

import numpy as np
import pytest
import sep

from skysift.core import detection as D
from skysift.core import flags as F
from skysift.core import photometry
from skysift.core.detection import detect, local_peak
from skysift.core.photometry import (
    KRON_INTEGRATION_RADIUS,
    KRON_MAX_IMAGE_FRACTION,
    corrected_cutout,
    measure,
    stays_on_source,
)
from skysift.settings import DetectionSettings, PhotometrySettings

BRIGHT = (100.0, 100.0, 40_000.0)  # x, y (px), flux (counts)


def _two_stars(faint_x: float, faint_flux: float, seed: int = 0) -> np.ndarray:
    """Unit white noise with a bright Gaussian star (sigma 1.3 px) and a faint one beside it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:200, :200]
    frame = rng.normal(0.0, 1.0, (200, 200))
    for x, y, flux in (BRIGHT, (faint_x, 100.3, faint_flux)):
        frame += flux / (2 * np.pi * 1.3**2) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.3**2))
    return frame.astype(np.float32)


@pytest.mark.parametrize(("faint_x", "faint_flux"), [(110.0, 1000.0), (112.0, 300.0), (112.0, 1000.0), (114.0, 300.0)])
def test_a_faint_star_beside_a_bright_one_keeps_its_own_position(faint_x, faint_flux):
    """The neighbour's light inflates the faint star's half-light radius, hence its window,
    which then walked 7-9 px onto the bright star (one source listed twice, on real skies)."""
    frame = _two_stars(faint_x, faint_flux)
    objects = detect(frame, np.float32(1.0), None, DetectionSettings(), noise_factor=1.0).objects
    columns = measure(frame, objects, np.ones(frame.shape, np.float32), None, PhotometrySettings())
    assert len(objects) == 2
    order = np.argsort(columns["x"])
    assert columns["x"][order] == pytest.approx([BRIGHT[0], faint_x], abs=0.3)
    assert columns["y"][order] == pytest.approx([BRIGHT[1], 100.3], abs=0.3)


def test_a_position_is_off_its_source_beyond_its_isophote_or_nearer_another_peak():
    dtype = [("x", float), ("y", float), ("a", float), ("xpeak", int), ("ypeak", int)]
    objects = np.array([(10.0, 10.0, 2.0, 10, 10), (20.0, 10.0, 0.5, 20, 10)], dtype=dtype)
    assert stays_on_source(objects, np.array([11.5, 20.8]), np.array([10.0, 10.0])).tolist() == [True, True]
    assert stays_on_source(objects, np.array([12.5, 21.2]), np.array([10.0, 10.0])).tolist() == [False, False]
    # within the isophote, but nearer a neighbour's peak than its own
    near = np.array([(10.0, 10.0, 8.0, 10, 10), (20.0, 10.0, 2.0, 20, 10)], dtype=dtype)
    assert stays_on_source(near, np.array([16.0, 20.0]), np.array([10.0, 10.0])).tolist() == [False, True]
    # a neighbour given apart (beyond a strip's core) counts as well
    assert not stays_on_source(near[:1], np.array([16.0]), np.array([10.0]), neighbours=near)[0]


def _stars(stars, pedestal: float = 0.0, size: int = 200, seed: int = 0) -> np.ndarray:
    """Unit white noise, a flat ``pedestal`` and Gaussian stars (sigma 1.3 px) of (x, y, flux)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    frame = rng.normal(0.0, 1.0, (size, size)) + pedestal
    for x, y, flux in stars:
        frame += flux / (2 * np.pi * 1.3**2) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.3**2))
    return frame.astype(np.float32)


def _measured(frame: np.ndarray, with_neighbours: bool = True, companions: bool = True) -> dict[str, np.ndarray]:
    """Detect and measure ``frame`` (unit noise), correcting neighbours (and undetected
    companions) or not; rows sorted by x."""
    found = detect(frame, np.float32(1.0), None, DetectionSettings(), noise_factor=1.0, segmentation_map=True)
    extra = {"segmap": found.segmap, "seg_ids": found.seg_ids} if with_neighbours else {}
    if with_neighbours and companions:
        extra["companions"] = found.companions
    columns = measure(frame, found.objects, np.ones(frame.shape, np.float32), None, PhotometrySettings(), **extra)
    order = np.argsort(columns["x"])
    return {name: values[order] for name, values in columns.items()}


FAINT = (108.0, 100.3, 3000.0)  # 8 px from BRIGHT, 13 times fainter


def test_a_neighbours_light_is_corrected_in_a_stars_kron_and_aperture_fluxes():
    """Issue 14 item 3: as Source Extractor's MASK_TYPE CORRECT, the bright neighbour's
    pixels are replaced by the faint star's own, mirrored through its centre."""
    alone = _measured(_stars([FAINT]))
    pair = _measured(_stars([BRIGHT, FAINT]))
    blind = _measured(_stars([BRIGHT, FAINT]), with_neighbours=False)
    assert len(pair["x"]) == 2 and len(alone["x"]) == 1
    for column in ("flux", "flux_aper_1", "flux_aper_2", "flux_aper_3"):
        assert pair[column][1] == pytest.approx(alone[column][0], rel=0.01), column
    for column in ("flux", "flux_aper_2", "flux_aper_3"):  # (the 3 px circle does not reach the neighbour)
        assert blind[column][1] > 1.5 * alone[column][0], column  # its light counted as the faint star's (Kron: 14x)
    assert pair["half_light_radius_px"][1] == pytest.approx(alone["half_light_radius_px"][0], rel=0.05)
    assert pair["flags"][1] & F.APER_CONTAMINATED and not blind["flags"][1] & F.APER_CONTAMINATED
    assert pair["flux"][0] == pytest.approx(_measured(_stars([BRIGHT]))["flux"][0], rel=0.01)


def test_a_half_light_radius_is_measured_above_the_local_pedestal():
    """Unresolved light under a source (a globular cluster's, a nebula's) inflated its
    half-light radius, so that a cluster's stars were called galaxies."""
    star = (100.0, 100.0, 1000.0)
    alone = _measured(_stars([star]))["half_light_radius_px"][0]
    on_pedestal, blind = (_measured(_stars([star], pedestal=0.8), with_neighbours=corrected) for corrected in (True, False))
    # (the pedestal, 0.8 sigma a pixel, lifts noise peaks over the threshold too: pick the star)
    on_pedestal, blind = (m["half_light_radius_px"][np.argmin(np.hypot(m["x"] - 100, m["y"] - 100))]
                          for m in (on_pedestal, blind))
    assert on_pedestal == pytest.approx(alone, rel=0.02)
    assert blind > 1.06 * alone


def test_corrected_cutout_mirrors_other_sources_pixels_through_the_centre():
    data = np.arange(49, dtype=np.float32).reshape(7, 7)
    error = np.full((7, 7), 2.0, np.float32)
    segmap = np.zeros((7, 7), np.int32)
    segmap[3, 3] = 1  # the source, centred on (3, 3)
    segmap[3, 5] = 2  # a neighbour pixel: its mirror (3, 1) is sky
    segmap[1, 3] = segmap[5, 3] = 3  # a neighbour on both sides: no usable mirror
    error[3, 1] = 5.0
    cut = corrected_cutout(data, error, None, segmap, 1, 3.0, 3.0, half=3.0)
    assert cut.data[3, 5] == data[3, 1] and cut.error[3, 5] == 5.0
    assert cut.data[1, 3] == 0.0 and cut.data[5, 3] == 0.0
    assert cut.neighbour.sum() == 3 and (cut.data[~cut.neighbour] == data[~cut.neighbour]).all()
    assert not cut.clipped and corrected_cutout(data, error, None, segmap, 1, 3.0, 3.0, half=4.0).clipped


def test_a_giant_sources_kron_aperture_is_capped_within_the_frame():
    """A blob 40 px across: its Kron aperture (3.5 a at least) would reach beyond a 200 px
    frame (on m13 Kron apertures reached 255 px of 300); it is capped at a quarter of the
    frame's side, the Kron radius at 6 (a, b), Source Extractor's integration limit."""
    yy, xx = np.mgrid[:200, :200]
    frame = np.random.default_rng(1).normal(0.0, 1.0, (200, 200))
    frame += 5.0 * np.exp(-((xx - 100) ** 2 + (yy - 100) ** 2) / (2 * 40.0**2))
    frame = frame.astype(np.float32)
    found = detect(frame, np.float32(1.0), None, DetectionSettings(), noise_factor=1.0, segmentation_map=True)
    columns = measure(frame, found.objects, np.ones(frame.shape, np.float32), None, PhotometrySettings(),
                      segmap=found.segmap, seg_ids=found.seg_ids)
    giant = np.argmax(columns["npix"])
    o = found.objects[giant]
    assert PhotometrySettings().kron_min_radius * o["a"] > 100  # uncapped, it would run off the frame
    cap = KRON_MAX_IMAGE_FRACTION * 200
    capped, _, flag = sep.sum_ellipse(frame, [o["x"]], [o["y"]], [o["a"]], [o["b"]], [o["theta"]], [cap / o["a"]], subpix=1)
    assert flag[0] == 0 and columns["flux"][giant] == pytest.approx(capped[0], rel=1e-6)
    assert (columns["kron_radius"] <= KRON_INTEGRATION_RADIUS).all()


def test_a_segmentation_map_needs_the_labels_of_the_objects():
    frame = _stars([BRIGHT])
    found = detect(frame, np.float32(1.0), None, DetectionSettings(), noise_factor=1.0, segmentation_map=True)
    with pytest.raises(ValueError, match="seg_ids"):
        measure(frame, found.objects, np.ones(frame.shape, np.float32), None, PhotometrySettings(), segmap=found.segmap)


def test_crowded_neighbours_are_corrected_a_bounded_batch_at_a_time(monkeypatch):
    """In a crowded frame the cut-outs of the sources with neighbours overlap and hold several
    times the frame's pixels together (111 million for a 4352^2 tile of 30,000 stars: 2 GiB):
    they are cut and measured a batch of at most MOSAIC_MAX_PIXELS at a time, and the catalog is
    the one of a single batch (but for the rounding of positions moved into another mosaic)."""
    rng = np.random.default_rng(3)
    stars = np.c_[rng.uniform(10, 290, (150, 2)), 10 ** rng.uniform(2.5, 4, 150)]  # x, y, flux
    frame = _stars(stars, size=300)
    whole = _measured(frame)
    batches = []
    lay_out = photometry._mosaics

    def spy(boxes):
        batches.append((len(boxes), sum(box.size for box in boxes)))
        return lay_out(boxes)

    monkeypatch.setattr(photometry, "MOSAIC_MAX_PIXELS", 20_000)
    monkeypatch.setattr(photometry, "_mosaics", spy)
    batched = _measured(frame)
    assert len(batches) > 4 and all(pixels <= 20_000 or n == 1 for n, pixels in batches)
    assert whole.keys() == batched.keys()
    for name, values in whole.items():
        if np.issubdtype(values.dtype, np.floating):
            np.testing.assert_allclose(batched[name], values, rtol=1e-9, atol=1e-9, err_msg=name)
        else:
            assert (batched[name] == values).all(), name


def test_the_box_a_mosaic_is_laid_out_from_is_the_cutouts_own():
    rng = np.random.default_rng(5)
    data = rng.normal(size=(40, 50)).astype(np.float32)
    segmap = np.zeros(data.shape, np.int32)
    for cx, cy, half in [*zip(rng.uniform(-3, 53, 200), rng.uniform(-3, 43, 200), rng.uniform(0.5, 12, 200),
                              strict=True), (0.0, 0.0, 3.0), (49.0, 39.0, 2.5), (25.5, 20.5, 4.0)]:
        cut = corrected_cutout(data, data, None, segmap, 1, cx, cy, half)
        box = photometry._cutout_box(cx, cy, half, data.shape)
        assert (box.shape, box.size, box.x0, box.y0, box.clipped) == (cut.data.shape, cut.data.size, cut.x0, cut.y0,
                                                                      cut.clipped)


def test_a_mosaic_holds_one_cut_out_at_a_time_beside_it(monkeypatch):
    """The layout comes from the boxes: each corrected cut-out is made as its place in the mosaic
    is filled, not a whole batch of them first (18 MiB more on the 4096^2 bench sky)."""
    rng = np.random.default_rng(3)
    frame = _stars(np.c_[rng.uniform(10, 290, (150, 2)), 10 ** rng.uniform(2.5, 4, 150)], size=300)
    monkeypatch.setattr(photometry, "_loops", None)  # NumPy's loops (the compiled ones make no cut-out)
    made, most_alive = [], [0]
    original = photometry.corrected_cutout

    def counting(*args, **kwargs):  # (a cut-out is freed by reference counting: no cycles)
        most_alive[0] = max(most_alive[0], sum(ref() is not None for ref in made))
        cut = original(*args, **kwargs)
        made.append(weakref.ref(cut))
        return cut

    monkeypatch.setattr(photometry, "corrected_cutout", counting)
    _measured(frame)
    assert len(made) > 20 and most_alive[0] <= 1


COMPANION = (105.0, 100.3, 8000.0)  # 5 px from BRIGHT, a fifth of its flux: no peak of its own once filtered


def test_an_undetected_companion_inside_a_stars_isophote_is_corrected():
    """Most stars with a neighbour within 8 px that Source Extractor measured more than 10%
    off (and skysift with it) had a fainter companion inside their own isophote, never
    split off: its pixels are now found by their asymmetry and corrected like a
    neighbour's, mirrored through the star's peak."""
    frame = _stars([BRIGHT, COMPANION])
    found = detect(frame, np.float32(1.0), None, DetectionSettings(), noise_factor=1.0, segmentation_map=True)
    assert len(found.objects) == 1  # one detection, the companion inside its isophote
    yy, xx = np.nonzero(found.companions)
    assert len(xx) > 20 and found.companions[100, 105]  # on the companion, on its side of the star ...
    assert (xx > BRIGHT[0] + 2).all() and abs(yy.mean() - COMPANION[1]) < 0.5
    alone = _measured(_stars([BRIGHT]))
    corrected = _measured(frame)
    as_source_extractor = _measured(frame, companions=False)  # MASK_TYPE CORRECT: nothing detected to correct
    # (what remains, 2.4%, is the companion's light beyond the pixels found: its faint wings)
    assert corrected["flux"][0] == pytest.approx(alone["flux"][0], rel=0.03)
    assert as_source_extractor["flux"][0] > 1.15 * alone["flux"][0]  # 1.20
    for column in ("flux_aper_2", "flux_aper_3"):
        assert corrected[column][0] == pytest.approx(alone[column][0], rel=0.03), column
        assert as_source_extractor[column][0] > 1.1 * alone[column][0], column
    assert corrected["x"][0] == pytest.approx(BRIGHT[0], abs=0.05)
    # Source Extractor's flag 1 knows only detected neighbours: no APER_CONTAMINATED
    assert not corrected["flags"][0] & F.APER_CONTAMINATED


@pytest.mark.parametrize("masked", [False, True])
def test_companions_found_a_block_of_pixels_at_a_time_are_those_found_at_once(monkeypatch, masked):
    """The isophote pixels are compared with their opposite points in blocks (memory): any
    block size gives the same companions, with or without masked pixels."""
    rng = np.random.default_rng(8)
    pairs = [(x, y, f) for x, y in rng.uniform(20, 280, (12, 2)) for f in (30_000.0,)]
    pairs += [(x + 5.0, y + 0.3, 6000.0) for x, y, _f in pairs]  # a companion beside each star
    frame = _stars(pairs, size=300)
    mask = None
    if masked:
        mask = np.zeros(frame.shape, dtype=bool)
        mask[:, 150:153] = True
        frame[mask] = 0.0

    def found() -> np.ndarray:
        return detect(frame, np.float32(1.0), mask, DetectionSettings(), noise_factor=1.0,
                      segmentation_map=True).companions

    at_once = found()
    monkeypatch.setattr(D, "COMPANION_BLOCK_PX", 7)
    assert at_once.sum() > 50
    np.testing.assert_array_equal(found(), at_once)


def test_the_sky_mask_of_the_pedestal_covers_only_the_rows_its_annuli_reach(monkeypatch):
    """Outside those rows the mask is left untouched (a strip worker's sources reach half a
    frame's rows): the same pedestals and catalog as with the whole frame's mask."""
    rng = np.random.default_rng(11)
    stars = np.c_[rng.uniform(20, 280, 40), rng.uniform(120, 180, 40), 10 ** rng.uniform(2.5, 4.5, 40)]
    frame = _stars(stars, pedestal=0.0, size=300)
    banded = _measured(frame)
    rows = photometry._rows_reached(banded["y"], np.full(len(banded["y"]), 20.0), 300)
    assert rows.start > 0 and rows.stop < 300  # a band, not the frame
    monkeypatch.setattr(photometry, "_rows_reached", lambda y, radius, ny: slice(0, ny))
    whole = _measured(frame)
    for name, values in whole.items():
        np.testing.assert_array_equal(banded[name], values, err_msg=name)
    assert photometry._not_sky(np.ones((6, 4), np.int16), None, slice(2, 4)).sum(axis=1).tolist() == [0, 0, 4, 4, 0, 0]


def test_the_annuli_read_no_pixel_beyond_the_rows_reached():
    rng = np.random.default_rng(12)
    x, y = rng.uniform(-5, 205, 2000), rng.uniform(40, 160, 2000)
    rin = rng.uniform(0.5, 30, 2000)
    rout = rin + rng.uniform(0.1, 8, 2000)
    for k in range(0, 2000, 50):  # groups of sources, each with its own band of rows
        part = slice(k, k + 50)
        rows = photometry._rows_reached(y[part], rout[part], 200)
        beyond = np.ones((200, 200))
        beyond[rows] = 0.0
        total, _err, _flag = sep.sum_circann(beyond, x[part], y[part], rin[part], rout[part], subpix=1)
        assert (total == 0).all()
    assert photometry._rows_reached(np.array([50.0]), np.array([np.nan]), 200) == slice(0, 200)


def _profiles(parts, seed: int = 0, size: int = 200) -> np.ndarray:
    """Unit white noise and elliptical Gaussians (x, y, sigma_major, sigma_minor, angle, flux)."""
    yy, xx = np.mgrid[:size, :size]
    frame = np.random.default_rng(seed).normal(0.0, 1.0, (size, size))
    for x, y, major, minor, angle, flux in parts:
        u = (xx - x) * np.cos(angle) + (yy - y) * np.sin(angle)
        v = -(xx - x) * np.sin(angle) + (yy - y) * np.cos(angle)
        frame += flux / (2 * np.pi * major * minor) * np.exp(-0.5 * ((u / major) ** 2 + (v / minor) ** 2))
    return frame.astype(np.float32)


def _companions(frame: np.ndarray) -> int:
    return int(detect(frame, np.float32(1.0), None, DetectionSettings(), noise_factor=1.0,
                      segmentation_map=True).companions.sum())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_symmetric_sources_have_no_companions(seed):
    """Isolated stars, bright or faint, and an elongated, tilted galaxy: nothing to correct."""
    assert _companions(_stars([BRIGHT], seed=seed)) == 0
    assert _companions(_stars([(100.4, 99.7, 2000.0)], seed=seed)) == 0
    assert _companions(_profiles([(100.3, 99.6, 4.0, 2.0, 0.6, 20_000.0)], seed=seed)) == 0


def test_a_lopsided_source_is_not_cut_into_a_companion(monkeypatch):
    """A source's own asymmetric light (a nebula, an irregular galaxy: one of MAGPIS's
    sources lost a third of its flux) covers more than a star beside it would."""
    lopsided = _profiles([(100.0, 100.0, 3.0, 3.0, 0.0, 30_000.0), (106.0, 100.0, 5.0, 5.0, 0.0, 15_000.0)])
    assert _companions(lopsided) == 0
    monkeypatch.setattr(D, "COMPANION_MAX_AREA_FWHM2", 1e6)
    assert _companions(lopsided) > 300  # without the cap on a companion's area


def test_the_local_peak_of_a_tilted_elongated_source_is_its_centre():
    """The vertex of a quadratic surface, within a pixel of the brightest one (here 0.7 px
    away): a parabola per axis, within half a pixel, missed the centre of a tilted ellipse
    by up to a third of a pixel, which made symmetric galaxies look lopsided."""
    yy, xx = np.mgrid[:41, :41]
    x0, y0 = 20.3, 19.6
    u, v = (xx - x0) * np.cos(0.6) + (yy - y0) * np.sin(0.6), -(xx - x0) * np.sin(0.6) + (yy - y0) * np.cos(0.6)
    image = np.exp(-0.5 * ((u / 4.0) ** 2 + (v / 2.0) ** 2))
    cx, cy = local_peak(image, np.array([22.0]), np.array([17.0]), steps=5)
    assert cx[0] == pytest.approx(x0, abs=0.1) and cy[0] == pytest.approx(y0, abs=0.1)


def _frame_first(frame: np.ndarray, found) -> dict[str, np.ndarray]:
    """The half-light radii and positions :func:`measure` gave when it measured every source on
    the whole frame first and then overwrote those of the corrected sources (the reference
    for measuring on the frame only what the corrections leave)."""
    objects, settings = found.objects, PhotometrySettings()
    error = np.ones(frame.shape, np.float32)
    x, y = objects["x"].astype(np.float64), objects["y"].astype(np.float64)
    ea, eb, etheta, _ = photometry.sep_ellipses(objects["a"], objects["b"], objects["theta"])
    largest = photometry.KRON_MAX_IMAGE_FRACTION * min(frame.shape)
    kron = photometry._kron(frame, x, y, ea, eb, etheta, error, None, None, settings, largest)
    pedestal = photometry._local_pedestal(frame, x, y, ea, eb, kron, error, found.segmap, None)
    kron.r50, plain = photometry._half_light(frame, x, y, ea, eb, kron, pedestal, None, largest)
    window = photometry._window(frame, x, y, plain, None)
    _, _, corrected, windowed = photometry._correct_neighbours(
        frame, error, None, (found.segmap, found.companions), np.asarray(found.seg_ids), x, y, (ea, eb, etheta), kron,
        pedestal, window, None, settings, largest)
    sig, xwin, ywin, flag = window
    good = (flag == 0) & np.isfinite(xwin) & np.isfinite(ywin) & (np.hypot(xwin - x, ywin - y) < 2.0 * sig + 1)
    good &= stays_on_source(objects, np.where(good, xwin, x), np.where(good, ywin, y))
    return {"x": np.where(good, xwin, x), "y": np.where(good, ywin, y), "r50": kron.r50,
            "corrected_frame_window": corrected & ~windowed}


@pytest.mark.parametrize("seed", [3, 5, 6, 7])
def test_measuring_on_the_frame_only_what_the_corrections_leave_changes_no_value(seed):
    rng = np.random.default_rng(seed)
    stars = np.c_[rng.uniform(10, 290, (150, 2)), 10 ** rng.uniform(2.5, 4, 150)]  # x, y, flux
    frame = _stars(stars, pedestal=2.0, size=300, seed=seed)
    found = detect(frame, np.float32(1.0), None, DetectionSettings(), noise_factor=1.0, segmentation_map=True)
    columns = measure(frame, found.objects, np.ones(frame.shape, np.float32), None, PhotometrySettings(),
                      segmap=found.segmap, seg_ids=found.seg_ids, companions=found.companions)
    reference = _frame_first(frame, found)
    # some corrected sources keep the frame's window (it would leave their cut-out): sized by the frame's Kron flux
    assert reference["corrected_frame_window"].any()
    np.testing.assert_array_equal(columns["x"], reference["x"])
    np.testing.assert_array_equal(columns["y"], reference["y"])
    np.testing.assert_array_equal(columns["half_light_radius_px"], reference["r50"].astype(np.float32))
    # the circles: SEP's sums on the frame where nothing else is in reach, the corrected cut-out's elsewhere
    settings = PhotometrySettings()
    half = max(settings.aperture_radii_px) + 1.0
    dirty = np.array([photometry._foreign(found.segmap, int(o), float(cx), float(cy), half, found.companions) != 0
                      for o, cx, cy in zip(found.seg_ids, columns["x"], columns["y"], strict=True)])
    for k, radius in enumerate(settings.aperture_radii_px, start=1):
        frame_sum, _, _ = sep.sum_circle(frame, columns["x"], columns["y"], radius, err=np.ones(frame.shape, np.float32),
                                         subpix=0)
        np.testing.assert_array_equal(columns[f"flux_aper_{k}"][~dirty], frame_sum[~dirty])
        assert (columns[f"flux_aper_{k}"][dirty] != frame_sum[dirty]).any()
