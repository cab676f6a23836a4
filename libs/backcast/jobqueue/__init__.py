"""The job queue: jobs, leases and the PostgreSQL store that holds them."""

from backcast.jobqueue.jobs import (
    TERMINAL_STATES,
    HeldLease,
    Job,
    JobState,
    Lease,
    ReapedJob,
    RenewedLease,
)

__all__ = [
    "TERMINAL_STATES",
    "HeldLease",
    "Job",
    "JobState",
    "Lease",
    "ReapedJob",
    "RenewedLease",
]
