"""The C allocator's free memory given back to the system (strip workers' memory, issue 15)."""

from __future__ import annotations

import sys

import pytest

from skysift.heap import release_free_heap


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
