"""Logging and tracing setup, and the names of shared log fields.

Only a service's `__main__` calls `configure`; every module just does
`logger = logging.getLogger(__name__)` and logs a constant message with
`extra={"event": ..., JOB_ID: ...}`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

# Field names shared by every service, so a search for one job or lease
# finds its lines across gateway, scheduler and workers.
EVENT = "event"
JOB_ID = "job_id"
ATTEMPT = "attempt"
FENCING_TOKEN = "fencing_token"
WORKER = "worker"
SLOT = "slot"
OWNER = "owner"
SCHEDULER = "scheduler"

_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extra fields."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _iso_time(record.created),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def _iso_time(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


def configure(service: str, level: str = "INFO") -> None:
    """Send structured log lines of `service` to stderr at `level`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
