"""The C allocator's policy for the process that runs: freed memory is kept for reuse.

A forward pass on a CPU allocates and frees activations of tens of megabytes per batch. glibc serves
blocks that large with mmap and hands them back to the kernel on free, so every batch faults in fresh,
zeroed pages: on the corruption sweep that was about 40% of the evaluation time (page faults, `sys`
time). Served from the heap and kept, the pages are reused. Only where memory comes from changes, never
what is computed: the numbers stay the same to the bit; the peak memory grows (about 5% at 32 px and
20% at 64 px with eval.batch_size 256), since the heap keeps its high-water mark.
"""
from __future__ import annotations

import ctypes
import sys

# mallopt parameters, from glibc's malloc.h
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
KEEP_BELOW = 1 << 30  # give memory back to the kernel only when more than this is free at the heap's top


def keep_freed_memory() -> bool:
    """Ask glibc to serve every block from the heap (no mmap) and to keep what is freed; True if it
    agreed. Elsewhere (macOS, musl) nothing changes and the answer is False."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_BELOW))
