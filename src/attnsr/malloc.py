"""Process-wide allocator settings: big buffers stay in glibc's heap between tiles.

Imports nothing heavy (the CLI calls :func:`tune_malloc` before torch is loaded).
"""

from __future__ import annotations

import ctypes
import os
import sys

MALLOC_ENV = "ATTNSR_MALLOC"  # "system": leave glibc's malloc settings alone
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)


def tune_malloc(trim_threshold: int = 1 << 30) -> bool:
    """Keep freed tile buffers in glibc's heap for the next tile instead of unmapping them.

    glibc serves every allocation over 32 MiB (a tile's feature maps) with its own
    ``mmap`` and ``munmap``s it on ``free``; every tile then faults its activations in
    again, each page zero-filled by the kernel: system time was 25-44% of the CPU time
    of a tiled upscale (a 3000x2000 x4 photo: 23.9 M minor faults). With
    ``M_MMAP_MAX = 0`` (no per-allocation maps) and ``trim_threshold`` bytes of free
    heap kept, the next tile reuses the freed blocks: system time 4-9% of the CPU time,
    5-8x fewer faults, the CPU time a third lower. The price is heap fragmentation:
    peak resident memory +25-70% of the tile work (measured in ``docs/deployment.md``,
    "Memory and allocation churn"); a fixed ``M_MMAP_THRESHOLD`` (at most 32 MiB)
    or transparent huge pages do not cut the system time. Process-wide: ``attnsr``
    calls it at start; library users may. Returns whether the settings were applied
    (glibc on Linux, ``$ATTNSR_MALLOC`` not ``system``)."""
    if os.environ.get(MALLOC_ENV, "").strip().lower() == "system":
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(
        mallopt(_M_TRIM_THRESHOLD, min(trim_threshold, 2**31 - 1)))
