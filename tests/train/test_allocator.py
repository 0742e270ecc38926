"""``retain_freed_memory``: after it, a freed 64 MiB tensor stays in the heap (glibc's mallinfo2 counts it as free
space) instead of going back to the OS, so the next step's tensor reuses its pages."""

import ctypes
import ctypes.util
import subprocess
import sys

import pytest

CHILD = """
import ctypes, ctypes.util, sys
import torch
from coldstream.train.allocator import retain_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "retain":
    assert retain_freed_memory() and retain_freed_memory()  # idempotent
x = torch.ones(16 << 20)  # 64 MiB
del x
print(libc.mallinfo2().fordblks)
"""


def _glibc_with_mallinfo2() -> bool:
    try:
        return hasattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _glibc_with_mallinfo2(), reason="needs glibc >= 2.33")
def test_freed_tensor_stays_in_the_heap():
    def free_bytes(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True)
        return int(out.stdout.strip())

    assert free_bytes("default") < 32 << 20  # glibc's default: mmapped, handed back to the OS on free
    assert free_bytes("retain") >= 64 << 20  # kept for the next allocation
