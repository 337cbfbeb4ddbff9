"""augmentor.utils.allocator: glibc keeps large freed blocks, so a repeated large allocation stops faulting pages."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from augmentor.utils import allocator

SCRIPT = """
import ctypes, importlib.util, resource, sys
# The module alone, without the package (whose import loads torch: seconds, and its own allocations).
spec = importlib.util.spec_from_file_location("allocator", sys.argv[2])
allocator = importlib.util.module_from_spec(spec)
spec.loader.exec_module(allocator)
if sys.argv[1] == "keep":
    assert allocator.keep_large_buffers()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
size = 48 * 2**20  # above glibc's largest mmap threshold (32 MiB on 64-bit)

def use_buffer():
    pointer = libc.malloc(size)
    ctypes.memset(pointer, 1, size)
    libc.free(pointer)

use_buffer()  # warm up: the heap grows once
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(8):
    use_buffer()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_repeated_large_buffers_fault_far_fewer_pages_when_kept():
    def faults(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", SCRIPT, mode, allocator.__file__], capture_output=True, text=True,
                             check=True)
        return int(out.stdout.strip())

    pages = 8 * 48 * 2**20 // resource.getpagesize()
    mapped, kept = faults("map"), faults("keep")
    # Mapped anew, every page of every buffer faults once; kept, the pages are reused.
    assert mapped > 0.9 * pages and kept < 0.2 * pages
