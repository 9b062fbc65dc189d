"""Two processes on one in-memory image: the catalog one process makes, source for source."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from sky_factory import write_sky
from skysift.parallel import strips
from skysift.parallel.strips import Strip, plan_strips
from skysift.pipeline.image import process_image
from skysift.settings import Settings


def test_strip_cores_cover_the_frame_exactly_once():
    cover = np.zeros(1001, int)
    for strip in plan_strips(1001, 3, margin_px=50):
        cover[strip.y0 : strip.y1] += 1
        assert strip.ry0 == max(0, strip.y0 - 50) and strip.ry1 == min(1001, strip.y1 + 50)
    assert (cover == 1).all()


def _objects(y, ymin, ymax):
    dtype = [("y", float), ("ymin", int), ("ymax", int)]
    return np.array(list(zip(y, ymin, ymax, strict=True)), dtype=dtype)


def test_a_source_reaching_a_cut_edge_is_reported():
    strip = Strip(y0=1000, y1=2000, ry0=872, ry1=2128, ny=4000)  # strip coordinates: core 128..1128
    inside = _objects([500.0], [450], [550])
    assert strip.owned(inside, guard_px=5) == (np.array([True]), False)
    huge = _objects([140.0], [2], [300])  # centred in the core, pixels up to the cut at the top
    keep, truncated = strip.owned(huge, guard_px=5)
    assert keep.all() and truncated
    in_margin = _objects([60.0], [0], [120])  # touches the cut but belongs to the strip above
    assert strip.owned(in_margin, guard_px=5) == (np.array([False]), False)
    first = Strip(y0=0, y1=1000, ry0=0, ry1=1128, ny=4000)  # the frame's own edge is no cut
    assert not first.owned(_objects([3.0], [0], [8]), guard_px=5)[1]


def test_a_measurement_reaching_beyond_the_strips_rows_is_reported():
    """Neighbours are corrected in apertures from the segmentation map, which a strip knows
    on its own rows only: a source whose measurements read beyond them is measured whole."""
    strip = Strip(y0=1000, y1=2000, ry0=872, ry1=2128, ny=4000)  # frame rows
    assert not strip.reaches_cut(np.array([1000.0, 1999.0]), np.array([100.0, 100.0]), guard_px=5)
    assert strip.reaches_cut(np.array([1000.0]), np.array([125.0]), guard_px=5)
    assert strip.reaches_cut(np.array([1999.0]), np.array([125.0]), guard_px=5)
    first = Strip(y0=0, y1=1000, ry0=0, ry1=1128, ny=4000)  # the frame's own edge is no cut
    assert not first.reaches_cut(np.array([3.0]), np.array([100.0]), guard_px=5)


@pytest.fixture(scope="module")
def big_sky(tmp_path_factory):
    return write_sky(tmp_path_factory.mktemp("strips") / "big.fits", size=2048, n_stars=1500, n_galaxies=400, seed=7)[0]


def test_a_strip_map_on_the_frame_is_zero_beyond_the_strips_rows_and_keeps_its_values():
    strip = Strip(y0=10, y1=20, ry0=6, ry1=24, ny=40)
    labels = np.arange(18 * 5, dtype=np.int32).reshape(18, 5)
    frame = strip.on_frame(labels)
    assert frame.shape == (40, 5) and frame.dtype == np.int32
    np.testing.assert_array_equal(frame[6:24], labels)
    assert not frame[:6].any() and not frame[24:].any()
    assert strip.on_frame(labels.astype(np.int16)).dtype == np.int16
    assert strip.on_frame(labels > 40).dtype == bool


def test_two_processes_give_the_one_process_catalog(big_sky, tmp_path, monkeypatch):
    calls = []
    real_map = strips.map_forked
    monkeypatch.setattr("skysift.measure.frame.map_forked", lambda *a: calls.append(a) or real_map(*a))
    settings = Settings.load(home=tmp_path)
    one = process_image(str(big_sky), settings, workers=1)
    two = process_image(str(big_sky), settings, workers=2)
    assert len(calls) == 1 and len(calls[0][1]) == 2  # the second run did use two strips
    a, b = one.sources.to_pandas(), two.sources.to_pandas()
    assert len(a) == len(b) > 1000 and (a["flags"] & 1).sum() > 20  # blends included
    for name in a.columns:
        if a[name].dtype.kind == "f":
            np.testing.assert_allclose(b[name], a[name], rtol=1e-9, atol=1e-9, err_msg=name)
        else:
            assert (a[name] == b[name]).all(), name
    assert one.record.seeing_fwhm_px == two.record.seeing_fwhm_px


def test_only_a_strip_gives_seps_freed_memory_back_before_its_maps(big_sky, tmp_path, monkeypatch):
    """A strip worker trims the heap after SEP's extraction (its peak, the frame's maps it makes
    next); a whole frame, as each worker of a bulk run measures one, keeps that memory for
    them (trimming there cost ~7,000 page faults a 2048^2 frame)."""
    import skysift.core.detection as detection

    trims = tmp_path / "trims"
    trims.mkdir()
    # the strips run in forked processes: each trim leaves a file, not a list entry
    monkeypatch.setattr(detection, "release_free_heap", lambda: (trims / f"{os.getpid()}-{time.perf_counter_ns()}").touch())
    settings = Settings.load(home=tmp_path / "home")
    process_image(str(big_sky), settings, workers=1)
    assert not list(trims.iterdir())
    process_image(str(big_sky), settings, workers=2)
    assert len({p.name.split("-")[0] for p in trims.iterdir()}) == 2  # once in each strip's process


def test_a_strip_process_killed_fails_the_image_instead_of_waiting_forever(big_sky, tmp_path, monkeypatch):
    """A strip worker killed by the kernel (SIGKILL, as the out-of-memory killer does) used to leave
    ``multiprocessing.Pool.map`` waiting for it for ever; now the image fails with ``worker_died``."""
    import os
    import signal

    from skysift.measure import frame as measurement

    real = measurement._measure_strip

    def measure_strip(strip, **kwargs):
        if strip.ry0 > 0:  # the second strip (in a forked child, which inherits this function)
            os.kill(os.getpid(), signal.SIGKILL)
        return real(strip, **kwargs)

    monkeypatch.setattr(measurement, "_measure_strip", measure_strip)

    result = process_image(str(big_sky), Settings.load(home=tmp_path), workers=2)

    assert (result.record.status, result.record.error_reason) == ("failed", "worker_died")
    assert "part of this image died" in result.record.error_message
