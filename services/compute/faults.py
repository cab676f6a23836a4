"""Faults injected into slot processes on request, to prove recovery paths.

The fault-tolerance suite needs attempts that hang, crash or fail on cue
without depending on how fast the engine is. `BACKCAST_FAULTS` (read by each
slot process) names them, separated by semicolons:

    POINT[@INSTRUMENT]=ACTION

- POINT is where the slot process stops to act: `attempt.start` before the
  engine runs, `attempt.finish` after it produced a result and before the
  result goes back to the worker.
- `@INSTRUMENT` restricts the fault to backtests of that instrument, so one
  test can poison its own jobs while the rest of the platform runs normally.
- ACTION is one of:
  `sleep(SECONDS)`: hold the attempt (progress keeps its last value);
  `fail(retryable)` or `fail(fatal)`: the attempt fails with that kind;
  `raise(TEXT)`: the engine raises RuntimeError(TEXT), as with a bug;
  `crash`: the slot process dies of SIGSEGV, as with a native-code bug;
  `exit(CODE)`: the slot process exits with CODE;
  `allocate(MEGABYTES)`: the slot process allocates that much memory.

Unset, it costs nothing but an empty loop per attempt. Never set it in
production: it exists for tests and for rehearsing incidents.
"""

from __future__ import annotations

import os
import re
import signal
import time
from dataclasses import dataclass

from backcast.config import ConfigError
from backcast.errors import BacktestFailed

FAULTS_VARIABLE = "BACKCAST_FAULTS"
POINTS = ("attempt.start", "attempt.finish")

_FAULT = re.compile(
    r"^(?P<point>[a-z.]+)(?:@(?P<instrument>[^=]+))?"
    r"=(?P<action>[a-z]+)(?:\((?P<argument>[^)]*)\))?$"
)
_ACTIONS = ("sleep", "fail", "raise", "crash", "exit", "allocate")


@dataclass(frozen=True)
class Fault:
    """One configured fault: where, for which instrument, and what it does."""

    point: str
    instrument: str | None
    action: str
    argument: str

    def applies_to(self, point: str, instrument: str) -> bool:
        return self.point == point and self.instrument in (None, instrument)

    def strike(self) -> None:
        """Do the harm; returns only for `sleep` and `allocate`."""
        if self.action == "sleep":
            time.sleep(float(self.argument))
        elif self.action == "fail":
            retryable = self.argument == "retryable"
            raise BacktestFailed(
                f"injected {self.argument} failure at {self.point}",
                retryable=retryable,
            )
        elif self.action == "raise":
            raise RuntimeError(self.argument)
        elif self.action == "crash":
            os.kill(os.getpid(), signal.SIGSEGV)
            time.sleep(60)  # the signal arrives before this ends
        elif self.action == "exit":
            os._exit(int(self.argument))
        elif self.action == "allocate":
            # Touch every page, so the memory is really held, not just mapped.
            held = bytearray(int(self.argument) * 1024 * 1024)
            held[::4096] = b"\x01" * len(held[::4096])


class FaultPlan:
    """The faults of one slot process, looked up at each injection point."""

    def __init__(self, faults: tuple[Fault, ...] = ()) -> None:
        self._faults = faults

    def strike(self, point: str, instrument: str) -> None:
        """Set off every fault configured for `point` and `instrument`."""
        for fault in self._faults:
            if fault.applies_to(point, instrument):
                fault.strike()


def parse_faults(text: str) -> tuple[Fault, ...]:
    """The faults of a BACKCAST_FAULTS value; ConfigError names a bad one."""
    faults = []
    for item in filter(None, (part.strip() for part in text.split(";"))):
        match = _FAULT.match(item)
        if match is None:
            raise ConfigError(
                f"{FAULTS_VARIABLE}: {item!r} is not POINT[@INSTRUMENT]=ACTION"
            )
        fault = Fault(
            point=match["point"],
            instrument=match["instrument"],
            action=match["action"],
            argument=match["argument"] or "",
        )
        _check(fault, item)
        faults.append(fault)
    return tuple(faults)


def _check(fault: Fault, item: str) -> None:
    if fault.point not in POINTS:
        raise ConfigError(
            f"{FAULTS_VARIABLE}: unknown point in {item!r}; one of {', '.join(POINTS)}"
        )
    if fault.action not in _ACTIONS:
        raise ConfigError(
            f"{FAULTS_VARIABLE}: unknown action in {item!r}; "
            f"one of {', '.join(_ACTIONS)}"
        )
    numeric = {"sleep": float, "exit": int, "allocate": int}.get(fault.action)
    if numeric is not None:
        try:
            numeric(fault.argument)
        except ValueError:
            raise ConfigError(
                f"{FAULTS_VARIABLE}: {fault.action} needs a number in {item!r}"
            ) from None
    if fault.action == "fail" and fault.argument not in ("retryable", "fatal"):
        raise ConfigError(
            f"{FAULTS_VARIABLE}: fail takes retryable or fatal in {item!r}"
        )
