"""Keep freed memory in the process on CPU: glibc ``mallopt`` so that large tensors are reused, not re-faulted.

glibc serves every block above its mmap threshold (at most 32 MiB, adjusted as the program runs) with a fresh
``mmap`` and gives it back on free; a CPU training step frees and reallocates tens of such activations, and every
page of each is faulted in and zeroed again by the kernel. On the 2-core VM the demo is timed on, that halves feature
extraction (EfficientNet-Lite0 at 96², batch 64: ~360 vs ~660 frames/s) and costs a GMMix training step 16%
(520 vs 437 ms at the demo's shape). Raising the mmap and trim thresholds keeps freed blocks in the heap for the
next step, as jemalloc or tcmalloc would; the price is that the process holds on to its peak heap until it exits,
which a training process does anyway. CUDA tensors are unaffected (PyTorch caches them).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
_THRESHOLD = 1 << 30  # blocks up to 1 GiB come from the heap and stay there when freed

_applied = False


def retain_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds to 1 GiB, once per process; True when they are set (False off glibc,
    e.g. macOS or musl, where nothing changes)."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, _THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _THRESHOLD))
    return _applied
