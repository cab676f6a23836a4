"""Keep freed array memory in the process, so backtests do not fault it in again.

A backtest of a million candles allocates a few arrays of 8 MB each. By
default glibc serves such blocks with fresh `mmap` pages, or returns a freed
heap top to the system, so the next backtest touches every page anew: on a
million candles that page-faulting cost more than the compiled passes
themselves (about 8 of 21 ms in `benchmarks/engine_bench.py`). Raising the
mmap and trim thresholds keeps the memory of the largest backtest so far
in the worker for the next one; the price is that a worker's resident size
stays at its peak. See mallopt(3).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

logger = logging.getLogger(__name__)

# mallopt(3) parameter numbers of glibc.
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
# glibc caps the mmap threshold at 32 MiB on 64-bit systems; blocks above it
# (series of more than about 4 million candles) are still mapped fresh.
_MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
_TRIM_THRESHOLD_BYTES = 1024 * 1024 * 1024
_TOP_PAD_BYTES = 64 * 1024 * 1024


def retain_freed_memory() -> bool:
    """Ask the C allocator to reuse freed blocks; False where it cannot."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        # Not glibc (musl, macOS): their allocators have no such settings.
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    settings = (
        (_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES),
        (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES),
        (_M_TOP_PAD, _TOP_PAD_BYTES),
    )
    applied = all(mallopt(option, value) == 1 for option, value in settings)
    logger.debug(
        "allocator settings applied",
        extra={"event": "allocator_tuned", "applied": applied},
    )
    return applied
