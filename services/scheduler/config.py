"""Settings of the scheduler, read once from `BACKCAST_*` variables."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from backcast.config import (
    ConfigError,
    read_float,
    read_str,
    require_database_url,
)


def default_scheduler_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class SchedulerConfig:
    """How one scheduler replica runs; see README.md for each variable."""

    # PostgreSQL URL (BACKCAST_DATABASE_URL); required. Hidden from repr
    # because it may carry a password.
    database_url: str = field(repr=False)
    # Listen address host:port (BACKCAST_SCHEDULER_ADDRESS), 127.0.0.1:50052.
    address: str = "127.0.0.1:50052"
    # Seconds a lease lives without renewal (BACKCAST_SCHEDULER_LEASE_SECONDS),
    # 10; a dead worker's jobs run again within about this long.
    lease_seconds: float = 10.0
    # Seconds between worker heartbeats, told to workers in the welcome
    # (BACKCAST_SCHEDULER_HEARTBEAT_SECONDS), 2; must stay below lease_seconds.
    heartbeat_seconds: float = 2.0
    # Seconds between safety-net polls for queued jobs besides LISTEN/NOTIFY
    # (BACKCAST_SCHEDULER_POLL_SECONDS), 1.
    poll_seconds: float = 1.0
    # Name of this replica in logs and welcomes (BACKCAST_SCHEDULER_ID),
    # hostname-pid.
    scheduler_id: str = field(default_factory=default_scheduler_id)
    # Log level (BACKCAST_LOG_LEVEL), INFO.
    log_level: str = "INFO"
    # Days a finished job, its result and its attempts are kept
    # (BACKCAST_SCHEDULER_HISTORY_DAYS), 30; 0 keeps them forever.
    history_days: float = 30.0

    def __post_init__(self) -> None:
        # Two heartbeats must fit into one lease, or a single late heartbeat
        # would let a live worker's job be requeued.
        if self.heartbeat_seconds * 2 > self.lease_seconds:
            raise ConfigError(
                f"BACKCAST_SCHEDULER_HEARTBEAT_SECONDS={self.heartbeat_seconds} "
                "must be at most half of BACKCAST_SCHEDULER_LEASE_SECONDS="
                f"{self.lease_seconds}"
            )

    @property
    def prune_interval_seconds(self) -> float:
        """How often finished jobs past their retention are deleted."""
        return 60.0

    @property
    def reap_interval_seconds(self) -> float:
        """How often expired leases are looked for: every heartbeat, so a
        dead worker's job runs again within a lease plus one heartbeat."""
        return min(self.heartbeat_seconds, self.lease_seconds / 4)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SchedulerConfig:
        env = os.environ if env is None else env
        return cls(
            database_url=require_database_url(env),
            address=read_str(env, "BACKCAST_SCHEDULER_ADDRESS", "127.0.0.1:50052"),
            lease_seconds=read_float(
                env, "BACKCAST_SCHEDULER_LEASE_SECONDS", 10.0, 0.5, 3600.0
            ),
            heartbeat_seconds=read_float(
                env, "BACKCAST_SCHEDULER_HEARTBEAT_SECONDS", 2.0, 0.05, 600.0
            ),
            poll_seconds=read_float(
                env, "BACKCAST_SCHEDULER_POLL_SECONDS", 1.0, 0.05, 600.0
            ),
            scheduler_id=read_str(env, "BACKCAST_SCHEDULER_ID", default_scheduler_id()),
            log_level=read_str(env, "BACKCAST_LOG_LEVEL", "INFO").upper(),
            history_days=read_float(
                env, "BACKCAST_SCHEDULER_HISTORY_DAYS", 30.0, 0.0, 36_500.0
            ),
        )
