"""Profiles a service process with cProfile when `bench.py --profile DIR`
puts this directory on PYTHONPATH; Python imports it at start-up.

Only processes started as `python -m backcast.cli.launch MODULE` are
profiled (not their slot processes), on their main thread, where the
asyncio loop runs; the statistics go to DIR/MODULE-PID.prof at exit.
"""

from __future__ import annotations

import atexit
import cProfile
import os
import sys

_DIR = os.environ.get("BACKCAST_BENCH_PROFILE_DIR")
_ARGV = getattr(sys, "orig_argv", [])


def _dump(profiler: cProfile.Profile, module: str) -> None:
    profiler.disable()
    profiler.dump_stats(os.path.join(_DIR or ".", f"{module}-{os.getpid()}.prof"))


if _DIR and "backcast.cli.launch" in _ARGV:
    _profiler = cProfile.Profile()
    atexit.register(_dump, _profiler, _ARGV[-1])
    _profiler.enable()
