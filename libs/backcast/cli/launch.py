"""`python -m backcast.cli.launch MODULE`: run a service module that stops
when the process that launched it dies."""

from __future__ import annotations

import ctypes
import os
import runpy
import signal
import sys

LAUNCHER_PID_VAR = "BACKCAST_LAUNCHER_PID"
_PR_SET_PDEATHSIG = 1


def stop_with_launcher() -> None:
    """Ask Linux for SIGTERM when the launcher dies, or exit if it already has.

    Done here, after exec, rather than in a `preexec_fn`: code run between
    fork and exec in a threaded launcher (gRPC has threads) can deadlock.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    # The launcher may have died before the request took effect.
    expected = os.environ.get(LAUNCHER_PID_VAR)
    if expected and os.getppid() != int(expected):
        sys.exit(1)


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python -m backcast.cli.launch MODULE [ARGS...]")
    module = sys.argv[1]
    stop_with_launcher()
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
