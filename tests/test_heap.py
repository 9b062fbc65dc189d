"""The C allocator's free memory given back to the system, and the parent's objects kept out of
forked children's collections (strip and pool workers' memory and time, issue 15)."""

from __future__ import annotations

import contextlib
import gc
import os
import sys

import pytest

from skysift.heap import frozen_for_fork, release_free_heap
from skysift.parallel import strips
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
    assert len(counts) == 2 and all(error is None and result > 0 for result, error in counts)
    assert gc.get_freeze_count() == 0  # and the parent's are collectable again


def _private_dirty_kib() -> int:
    with open("/proc/self/smaps_rollup") as rollup:
        return next(int(line.split()[1]) for line in rollup if line.startswith("Private_Dirty"))


def _pages_a_childs_collection_copies(frozen: bool) -> int:
    """KiB of memory a forked child makes its own by running a full collection."""
    read, write = os.pipe()
    with frozen_for_fork() if frozen else contextlib.nullcontext():
        pid = os.fork()
        if pid == 0:  # the child: measure, collect, measure, report, leave without cleanup
            before = _private_dirty_kib()
            gc.collect()
            os.write(write, str(_private_dirty_kib() - before).encode())
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as answer:
        copied = int(answer.read())
    os.waitpid(pid, 0)
    return copied


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps_rollup"), reason="reads /proc/self/smaps_rollup")
def test_a_childs_collection_leaves_its_frozen_parents_objects_unwritten():
    objects = [{"n": i, "s": str(i)} for i in range(300_000)]  # tens of MiB of tracked objects in the parent
    unfrozen, frozen = _pages_a_childs_collection_copies(False), _pages_a_childs_collection_copies(True)
    assert unfrozen > 4 * 1024  # a collection visits (writes to) every tracked object's page ...
    assert frozen < unfrozen / 4  # ... unless they are frozen
    assert len(objects) == 300_000
