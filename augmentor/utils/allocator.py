"""Keep large transient CPU buffers in the heap instead of mapping and unmapping them on every call.

3D (transposed) convolutions on CPU allocate feature-map and im2col buffers of
tens of megabytes per batch. glibc's ``malloc`` serves blocks above its mmap
threshold (at most 32 MiB on 64-bit) with a fresh ``mmap`` and returns them with
``munmap`` on ``free``; the next batch maps them again and the kernel zero-fills
every page on first touch: one minor page fault per 4 KiB page, counted as system
time. :func:`keep_large_buffers` tells glibc (``mallopt``) to serve every block
from the heap and to keep freed memory there, so later batches reuse the same,
already-mapped pages. It changes no result (only where memory comes from); the
cost is that the heap's peak stays resident until the process ends.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

__all__ = ["keep_large_buffers"]

logger = logging.getLogger(__name__)

# mallopt parameters, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4
_TOP_PAD_BYTES = 64 * 2**20  # grow the heap in large steps: fewer brk calls for growing batches
_NEVER_TRIM = 2**31 - 1  # the largest int mallopt takes: the heap is not shrunk on free


def keep_large_buffers() -> bool:
    """Serve large blocks from the heap and never give freed heap memory back (glibc only).

    Call it once per process, before the heavy work; it affects allocations made
    after the call. Elsewhere (macOS, Windows, musl) it does nothing.

    Returns:
        True when glibc accepted the settings.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        ctypes.CDLL(None).gnu_get_libc_version  # only glibc has it; musl's mallopt is a stub
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    accepted = all(
        mallopt(parameter, value) == 1
        for parameter, value in ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _NEVER_TRIM), (_M_TOP_PAD, _TOP_PAD_BYTES))
    )
    if not accepted:
        logger.debug("glibc refused a mallopt setting; large buffers stay memory-mapped")
    return accepted
