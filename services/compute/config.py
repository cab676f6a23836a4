"""Settings of a compute worker, read once from `BACKCAST_*` variables."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from backcast.compute.faults import FAULTS_VARIABLE, Fault, parse_faults
from backcast.config import read_float, read_int, read_str


def default_n_slots() -> int:
    """Cores minus one, at least one: a core stays free for the worker itself."""
    return max(1, (os.cpu_count() or 1) - 1)


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class WorkerConfig:
    """How one compute worker runs; see README.md for each variable."""

    # Scheduler to connect to, host:port (BACKCAST_WORKER_SCHEDULER),
    # 127.0.0.1:50052.
    scheduler_address: str = "127.0.0.1:50052"
    # Backtests run at once, one process each (BACKCAST_WORKER_SLOTS),
    # cores minus one, at least one.
    n_slots: int = field(default_factory=default_n_slots)
    # Name of this worker towards the scheduler and in logs
    # (BACKCAST_WORKER_ID), hostname-pid; must be unique in the fleet.
    worker_id: str = field(default_factory=default_worker_id)
    # Listen address of the health and reflection services
    # (BACKCAST_WORKER_ADDRESS), 127.0.0.1:0 (any free port).
    address: str = "127.0.0.1:0"
    # Log level (BACKCAST_LOG_LEVEL), INFO.
    log_level: str = "INFO"
    # Attempts held waiting for a slot beyond the free slots
    # (BACKCAST_WORKER_PREFETCH), none. A waiting attempt starts the moment
    # a slot frees (a few percent more throughput on backtests of a few
    # milliseconds), but it waits behind whatever runs there, even while
    # another worker sits idle: with backtests of minutes that is minutes
    # of delay, so work is taken only for free slots unless asked.
    prefetch: int = 0
    # Longest an attempt may run before its slot process is killed and the
    # attempt fails retryably (BACKCAST_WORKER_ATTEMPT_TIMEOUT_SECONDS), 1 h.
    attempt_timeout_seconds: float = 3600.0
    # Address-space limit of each slot process in MiB, 0 for none
    # (BACKCAST_WORKER_SLOT_MEMORY_MB), none.
    slot_memory_mb: int = 0
    # Faults injected into slot processes (BACKCAST_FAULTS), none; see
    # faults.py. For tests only.
    faults: tuple[Fault, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerConfig:
        env = os.environ if env is None else env
        return cls(
            scheduler_address=read_str(
                env, "BACKCAST_WORKER_SCHEDULER", "127.0.0.1:50052"
            ),
            n_slots=read_int(env, "BACKCAST_WORKER_SLOTS", default_n_slots(), 1, 1024),
            prefetch=read_int(env, "BACKCAST_WORKER_PREFETCH", 0, 0, 4096),
            worker_id=read_str(env, "BACKCAST_WORKER_ID", default_worker_id()),
            address=read_str(env, "BACKCAST_WORKER_ADDRESS", "127.0.0.1:0"),
            log_level=read_str(env, "BACKCAST_LOG_LEVEL", "INFO").upper(),
            attempt_timeout_seconds=read_float(
                env, "BACKCAST_WORKER_ATTEMPT_TIMEOUT_SECONDS", 3600.0, 0.1, 604_800.0
            ),
            slot_memory_mb=read_int(
                env, "BACKCAST_WORKER_SLOT_MEMORY_MB", 0, 0, 16_777_216
            ),
            faults=parse_faults(env.get(FAULTS_VARIABLE, "")),
        )
