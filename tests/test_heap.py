"""The C allocator's free memory given back to the system, and the parent's objects kept out of
forked children's collections (strip and pool workers' memory and time, issue 15)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys

import pytest

from skysift.heap import ALLOCATOR_DEFAULTS, frozen_for_fork, release_free_heap
from skysift.parallel import pools, strips
from skysift.parallel.pools import run_surviving


def _resident_mib() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_memory_freed_inside_the_heap_leaves_the_process_when_released():
    chunks = [bytearray(16384) for _ in range(4096)]  # 64 MiB of heap chunks (below glibc's mmap threshold)
    pinned = bytearray(16384)  # allocated after them: the heap's top stays in use, so free() alone keeps them
    before = _resident_mib()
    del chunks
    if not release_free_heap():
        pytest.skip("this C library has no malloc_trim")
    assert _resident_mib() < before - 32
    assert len(pinned) == 16384


def test_objects_are_frozen_inside_the_block_and_collectable_after_it():
    assert gc.get_freeze_count() == 0
    with frozen_for_fork():
        assert gc.get_freeze_count() > 0
        with frozen_for_fork():  # a frozen parent's worker forking again
            pass
        assert gc.get_freeze_count() > 0  # the outer block's freeze is left to it
    assert gc.get_freeze_count() == 0


def test_strip_and_pool_workers_start_with_their_parents_objects_frozen():
    assert all(count > 0 for count in strips.map_forked(lambda _: gc.get_freeze_count(), [0, 1], 2))
    counts = []
    run_surviving(gc.get_freeze_count, [(), ()], 2, lambda i, result, error: counts.append((result, error)))
    # ... and the process a call runs in alone after its pool broke
    pools._run_alone(gc.get_freeze_count, (), 2, lambda i, result, error: counts.append((result, error)), None, ())
    assert len(counts) == 3 and all(error is None and result > 0 for result, error in counts)
    assert gc.get_freeze_count() == 0  # and the parent's are collectable again


#: Run in a process of its own (forking pytest's worker, with its threads and extensions, is not
#: what is measured): KiB a forked child makes its own by a full collection, unfrozen then frozen.
_CHILDS_COLLECTION = """
import contextlib, gc, os
from skysift.heap import frozen_for_fork

def private_dirty_kib():
    with open("/proc/self/smaps_rollup") as rollup:
        return next(int(line.split()[1]) for line in rollup if line.startswith("Private_Dirty"))

def copied_by_a_childs_collection(frozen):
    read, write = os.pipe()
    with frozen_for_fork() if frozen else contextlib.nullcontext():
        pid = os.fork()
        if pid == 0:
            before = private_dirty_kib()
            gc.collect()
            os.write(write, str(private_dirty_kib() - before).encode())
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as answer:
        copied = int(answer.read())
    os.waitpid(pid, 0)
    return copied

objects = [[i, str(i)] for i in range(300_000)]  # lists stay tracked by the collector (dicts of atoms do not)
print(copied_by_a_childs_collection(False), copied_by_a_childs_collection(True))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps_rollup"), reason="reads /proc/self/smaps_rollup")
def test_a_childs_collection_leaves_its_frozen_parents_objects_unwritten():
    done = subprocess.run([sys.executable, "-c", _CHILDS_COLLECTION], capture_output=True, text=True, check=True,
                          timeout=120)
    unfrozen, frozen = (int(value) for value in done.stdout.split())
    assert unfrozen > 4 * 1024  # a collection visits (writes to) every tracked object's page ...
    assert frozen < unfrozen / 4  # ... unless they are frozen


ALLOCATORS_PROBE = """
from skysift.heap import choose_allocators
choose_allocators()
import pyarrow
from numpy._core.multiarray import _get_madvise_hugepage
print(_get_madvise_hugepage(), pyarrow.default_memory_pool().backend_name)
"""


@pytest.mark.parametrize(("chosen", "expected"), [({}, "False system"),
                                                  ({"NUMPY_MADVISE_HUGEPAGE": "1"}, "True system"),
                                                  ({"ARROW_DEFAULT_MEMORY_POOL": "mimalloc"}, "False mimalloc")])
def test_numpy_and_arrow_imported_afterwards_use_the_chosen_allocators_unless_the_user_chose(chosen, expected):
    env = {key: value for key, value in os.environ.items() if key not in ALLOCATOR_DEFAULTS} | chosen
    done = subprocess.run([sys.executable, "-c", ALLOCATORS_PROBE], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected


def test_the_skysift_entry_point_chooses_before_numpy_and_arrow_are_imported(monkeypatch):
    """``skysift`` (``cli.main.main``) sets the defaults before its command runs; importing the
    command line imports neither numpy nor pyarrow, so the settings are in time."""
    from skysift.cli import main as entry
    from skysift.cli import terminal

    for name in ALLOCATOR_DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(terminal, "run_and_exit", lambda command: None)
    entry.main()
    assert {name: os.environ[name] for name in ALLOCATOR_DEFAULTS} == ALLOCATOR_DEFAULTS
    done = subprocess.run([sys.executable, "-c", "import sys, skysift.cli.main; print('numpy' in sys.modules, 'pyarrow' in sys.modules)"],
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False False", done.stderr


#: Run in a fresh interpreter: minor faults of a 4 MiB block written, freed and allocated again
#: (a fresh mapping each time while glibc unmaps what it frees; the same pages once it keeps them).
_REALLOCATION = """
import ctypes, os, resource, sys
from skysift.heap import keep_freed_heap
kept = keep_freed_heap() if sys.argv[1] == "keep" else None
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 4 * 2**20

def written_and_freed():
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)

written_and_freed()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
written_and_freed()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt, minor faults")
@pytest.mark.parametrize(("how", "env", "kept"), [
    ("keep", {}, "True"), ("leave", {}, "None"), ("keep", {"MALLOC_MMAP_THRESHOLD_": "131072"}, "False")])
def test_freed_blocks_of_a_few_mib_are_reused_not_mapped_afresh(how, env, kept):
    """After :func:`keep_freed_heap` a freed 4 MiB block is reused (no page touched afresh);
    glibc's own start unmaps it and maps a new one (a fault a page); a user's own
    ``MALLOC_MMAP_THRESHOLD_`` is left alone."""
    done = subprocess.run([sys.executable, "-c", _REALLOCATION, how], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})
    assert done.returncode == 0, done.stderr
    applied, faults = done.stdout.split()
    assert applied == kept
    if kept == "True":
        assert int(faults) < 64
    else:
        assert int(faults) > 512  # 1,024 pages of 4 KiB


#: Run in a process of its own (the allocator's settings are the process's): page faults of a
#: 64 MiB array made again after one was freed, as a 4096^2 frame's maps are, frame after frame.
_FRAME_AFTER_FRAME = """
import resource, sys
import numpy as np
from skysift.heap import keep_frames_heap
kept = keep_frames_heap() if sys.argv[1] == "keep" else None
np.ones(2**24, np.float32)  # the last frame's map, freed
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
np.ones(2**24, np.float32)
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_frame_workers_heap_keeps_the_last_frames_pages_for_the_next():
    def faults(mode: str, **env: str) -> tuple[str, int]:
        out = subprocess.run([sys.executable, "-c", _FRAME_AFTER_FRAME, mode], capture_output=True, text=True, check=True,
                             env={**os.environ, "NUMPY_MADVISE_HUGEPAGE": "0", **env}).stdout.split()
        return out[0], int(out[1])

    kept, few = faults("keep")
    if kept == "False":
        pytest.skip("this C library has no mallopt")
    assert kept == "True"
    _, fresh = faults("default")
    assert fresh > 4000 and few < fresh / 10, (few, fresh)  # 16,384 pages touched afresh, or the last frame's
    # the user's own allocator settings win
    assert faults("keep", MALLOC_TRIM_THRESHOLD_="1048576")[0] == "False"
    assert faults("keep", MALLOC_MMAP_MAX_="65536")[0] == "False"


def test_the_measuring_pools_workers_keep_their_frames_heap_when_the_frames_are_large(tmp_path, monkeypatch, make_sky):
    """Each worker of a bulk run keeps its frames' memory when some frame's maps are beyond the heap's
    largest block (4096^2 and up; here, the 256^2 frames made large by lowering that size); not
    with smaller frames, nor a single image's process, which may fork strip workers."""
    from skysift.pipeline import survey
    from skysift.settings import Settings

    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setattr(survey, "keep_frames_heap", lambda: (marks / str(os.getpid())).touch())
    folder = tmp_path / "sky"
    folder.mkdir()
    for k in range(5):
        make_sky(folder / f"f{k}.fits", size=256, seed=k)
    files = [str(p) for p in sorted(folder.glob("*.fits"))]
    settings = Settings.load(home=tmp_path / "home")
    survey.run_local(files[:1], settings, workers=2)
    assert not list(marks.iterdir())
    assert len(survey.run_local(files[:3], settings, workers=2).summaries) == 2  # f0 was done: a pool of two
    assert not list(marks.iterdir())  # 256^2 frames: 256 KiB maps
    monkeypatch.setattr(survey, "MMAP_THRESHOLD_BYTES", 256 * 256 * 4)
    assert len(survey.run_local(files, settings, workers=2).summaries) == 2
    assert 1 <= len(list(marks.iterdir())) <= 2 and str(os.getpid()) not in {p.name for p in marks.iterdir()}


def test_a_frames_pixels_from_its_listed_header():
    from astropy.io import fits

    from skysift.pipeline.survey import _frame_pixels

    assert _frame_pixels(fits.Header({"NAXIS": 2, "NAXIS1": 4096, "NAXIS2": 2048})) == 4096 * 2048
    assert _frame_pixels(fits.Header({"NAXIS": 2, "NAXIS1": 8, "NAXIS2": 100, "ZNAXIS1": 4096, "ZNAXIS2": 4096})) == 4096**2
    assert _frame_pixels(fits.Header({"NAXIS": 2, "NAXIS1": "4096", "NAXIS2": 10})) is None
    assert _frame_pixels(fits.Header({"NAXIS": 2, "NAXIS1": True, "NAXIS2": 10})) is None
    assert _frame_pixels(fits.Header({"NAXIS": 1, "NAXIS1": 10})) is None
