"""Slots: long-lived child processes that each run one backtest at a time."""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import importlib
import logging
import multiprocessing
import resource
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any

from backcast import telemetry
from backcast.compute.faults import Fault, FaultPlan
from backcast.engine.results import BacktestResult
from backcast.engine.spec import BacktestSpec
from backcast.errors import BacktestFailed
from backcast.telemetry import EVENT, SLOT

logger = logging.getLogger(__name__)

# The production backtest: `module:function` taking (spec, *, progress=).
ENGINE_ENTRY = "backcast.engine:run_backtest"

# Progress is sent at most this often, to keep the pipe and heartbeats light.
PROGRESS_INTERVAL_SECONDS = 0.2

# Linux prctl option that delivers a signal to a process when its parent dies.
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Succeeded:
    """The backtest produced a result."""

    result: BacktestResult


@dataclass(frozen=True)
class Failed:
    """The backtest raised; `retryable` says whether another attempt may help."""

    message: str
    retryable: bool


@dataclass(frozen=True)
class Stopped:
    """The attempt was stopped on request before it ended."""


Outcome = Succeeded | Failed | Stopped


@dataclass(frozen=True)
class SlotLimits:
    """What a slot process may spend on one attempt, and faults to inject.

    `timeout_seconds` bounds an attempt's run time; past it the process is
    killed and the attempt fails retryably (`max_attempts` bounds the
    retries). `memory_mb` caps each slot process's address space (0: no
    cap), so a runaway allocation raises MemoryError in the slot instead of
    waking the kernel's OOM killer on the whole machine.
    """

    timeout_seconds: float = 3600.0
    memory_mb: int = 0
    faults: tuple[Fault, ...] = ()


def process_context() -> BaseContext:
    """Forkserver where available: children start from a clean process, not
    from a fork of one running asyncio and gRPC threads, and start quickly."""
    if sys.platform == "linux":
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["backcast.engine.warmup"])
        return context
    return multiprocessing.get_context("spawn")


class Slot:
    """One child process and the attempt it is running, if any.

    The process receives a spec over a pipe, runs the engine and sends back
    progress and then the result or the failure. Stopping an attempt kills
    the process and starts a fresh one; a process that dies on its own fails
    its attempt retryably and is replaced the same way.
    """

    def __init__(
        self,
        index: int,
        context: BaseContext,
        entry: str,
        log_level: str,
        limits: SlotLimits,
    ) -> None:
        self.index = index
        self._context = context
        self._entry = entry
        self._log_level = log_level
        self._limits = limits
        self._deadline: asyncio.TimerHandle | None = None
        self._process: BaseProcess | None = None
        self._connection: Connection | None = None
        self._outcome: asyncio.Future[Outcome] | None = None
        self._on_progress: Callable[[float], None] | None = None
        self._closed = False

    @property
    def busy(self) -> bool:
        return self._outcome is not None

    @property
    def pid(self) -> int | None:
        """The process id of the slot's current process."""
        return None if self._process is None else self._process.pid

    def start_process(self) -> None:
        parent_end, child_end = self._context.Pipe(duplex=True)
        process = self._context.Process(  # type: ignore[attr-defined]
            target=_serve_attempts,
            args=(child_end, self._entry, self._log_level, self._limits),
            name=f"backcast-slot-{self.index}",
            daemon=True,
        )
        process.start()
        # Only the child may hold its end, so that its death reads as EOF here.
        child_end.close()
        self._process = process
        self._connection = parent_end
        asyncio.get_running_loop().add_reader(parent_end.fileno(), self._on_readable)

    def run(
        self, spec: dict[str, Any], on_progress: Callable[[float], None]
    ) -> asyncio.Future[Outcome]:
        """Start the attempt of `spec`; the future resolves with its outcome."""
        if self._outcome is not None or self._connection is None:
            raise RuntimeError(f"slot {self.index} is not free")
        loop = asyncio.get_running_loop()
        self._outcome = loop.create_future()
        self._on_progress = on_progress
        self._deadline = loop.call_later(self._limits.timeout_seconds, self._on_timeout)
        self._connection.send(spec)
        return self._outcome

    def stop(self) -> None:
        """Kill the running attempt (its future resolves Stopped); restart."""
        if self._outcome is None:
            return
        self._kill_process()
        self._restart_process()
        self._settle(Stopped())

    def close(self) -> None:
        """Kill the process for good; a running attempt resolves Stopped."""
        self._closed = True
        self._kill_process()
        if self._outcome is not None:
            self._settle(Stopped())

    def _restart_process(self) -> None:
        # Started before the attempt settles, so that the slot can take the
        # next attempt as soon as it is announced free.
        if not self._closed:
            self.start_process()

    def _kill_process(self) -> None:
        # SIGKILL: the engine runs numpy loops that need not yield to a
        # gentler signal, and a slot process holds nothing worth saving.
        self._forget_connection()
        if self._process is not None and self._process.is_alive():
            self._process.kill()
        self._process = None

    def _forget_connection(self) -> None:
        if self._connection is None:
            return
        asyncio.get_running_loop().remove_reader(self._connection.fileno())
        self._connection.close()
        self._connection = None

    def _on_readable(self) -> None:
        assert self._connection is not None
        try:
            message = self._connection.recv()
        except (EOFError, OSError):
            self._on_process_died()
            return

        kind = message[0]
        if kind == "progress" and self._on_progress is not None:
            self._on_progress(message[1])
        elif kind == "result":
            self._settle(Succeeded(message[1]))
        elif kind == "failed":
            self._settle(Failed(message[1], retryable=message[2]))

    def _on_timeout(self) -> None:
        self._deadline = None
        if self._outcome is None:
            return
        limit = self._limits.timeout_seconds
        logger.warning(
            "attempt ran past its execution timeout; slot process killed",
            extra={EVENT: "attempt_timed_out", SLOT: self.index, "limit": limit},
        )
        self._kill_process()
        self._restart_process()
        message = f"the backtest ran past the execution timeout of {limit:g} s"
        self._settle(Failed(message, retryable=True))

    def _on_process_died(self) -> None:
        self._forget_connection()
        process, self._process = self._process, None
        exit_code = None
        if process is not None:
            process.join(timeout=1.0)
            exit_code = process.exitcode
        logger.warning(
            "slot process died",
            extra={EVENT: "slot_died", SLOT: self.index, "exit_code": exit_code},
        )
        self._restart_process()
        if self._outcome is not None:
            message = f"the slot process died ({_exit_description(exit_code)})"
            self._settle(Failed(message, retryable=True))

    def _settle(self, outcome: Outcome) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        future, self._outcome = self._outcome, None
        self._on_progress = None
        if future is not None and not future.done():
            future.set_result(outcome)


class SlotPool:
    """K slots; `n_free` of them can take an attempt right now."""

    def __init__(
        self,
        n_slots: int,
        *,
        entry: str = ENGINE_ENTRY,
        log_level: str = "INFO",
        limits: SlotLimits | None = None,
    ) -> None:
        context = process_context()
        limits = limits or SlotLimits()
        self._slots = [
            Slot(index, context, entry, log_level, limits) for index in range(n_slots)
        ]

    @property
    def slots(self) -> tuple[Slot, ...]:
        return tuple(self._slots)

    @property
    def n_slots(self) -> int:
        return len(self._slots)

    @property
    def n_free(self) -> int:
        return sum(not slot.busy for slot in self._slots)

    def start(self) -> None:
        for slot in self._slots:
            slot.start_process()

    def free_slot(self) -> Slot | None:
        return next((slot for slot in self._slots if not slot.busy), None)

    def close(self) -> None:
        for slot in self._slots:
            slot.close()


def _exit_description(exit_code: int | None) -> str:
    if exit_code is None:
        return "exit code unknown"
    if exit_code < 0:
        return f"killed by {signal.Signals(-exit_code).name}"
    return f"exit code {exit_code}"


def _serve_attempts(
    connection: Connection, entry: str, log_level: str, limits: SlotLimits
) -> None:
    """Main loop of a slot process: one spec in, progress and an outcome out."""
    # The worker decides when a slot ends: Ctrl-C in a terminal reaches the
    # whole process group and must not kill attempts of a draining worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    telemetry.configure("compute", log_level)
    _limit_memory(limits.memory_mb)
    run = _load_entry(entry)
    faults = FaultPlan(limits.faults)

    while True:
        try:
            spec = connection.recv()
        except EOFError:
            return
        connection.send(_run_attempt(run, spec, connection, faults))


def _run_attempt(
    run: Callable[..., Any],
    spec: dict[str, Any],
    connection: Connection,
    faults: FaultPlan,
) -> tuple[Any, ...]:
    last_sent_at = 0.0

    def report_progress(fraction: float) -> None:
        nonlocal last_sent_at
        now = time.monotonic()
        if now - last_sent_at >= PROGRESS_INTERVAL_SECONDS:
            last_sent_at = now
            connection.send(("progress", float(fraction)))

    try:
        backtest = BacktestSpec.from_dict(spec)
        faults.strike("attempt.start", backtest.instrument)
        result = run(backtest, progress=report_progress)
        faults.strike("attempt.finish", backtest.instrument)
        # Pickled whole, its columns as array buffers. The metric
        # definitions stay behind: they are the engine's constants, nothing
        # stores them, and whoever reads a result gets the current ones.
        return ("result", dataclasses.replace(result, metric_definitions={}))
    except BacktestFailed as exc:
        return ("failed", exc.message, exc.retryable)
    except MemoryError:
        return ("failed", "the backtest ran out of memory", True)
    except (BrokenPipeError, ConnectionResetError):
        raise  # the worker is gone; so is this process
    except Exception as exc:  # noqa: BLE001 - reported as the attempt's failure
        logger.error(
            "backtest engine raised", exc_info=exc, extra={EVENT: "engine_error"}
        )
        # Retried like any failure not known to be permanent: it may come
        # from this process's state (a corrupt cache, a full disk) rather
        # than the spec, and max_attempts bounds the cost if it does not.
        message = f"the backtest engine raised {type(exc).__name__}: {exc}"
        return ("failed", message[:1000], True)


def _load_entry(entry: str) -> Callable[..., Any]:
    module_name, _, function_name = entry.partition(":")
    function: Callable[..., Any] = getattr(
        importlib.import_module(module_name), function_name
    )
    return function


def _limit_memory(memory_mb: int) -> None:
    if memory_mb <= 0:
        return
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _die_with_parent() -> None:
    # Without this a slot whose worker was killed would finish its backtest
    # for nobody. Linux only; elsewhere the broken pipe ends it later.
    if sys.platform != "linux":
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass
