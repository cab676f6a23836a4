"""Exception hierarchy of Backcast; each class owns the gRPC status it maps to.

Servicers raise these; the interceptor in `backcast.rpc.errors` turns them
into a status with rich details. Anything else that escapes a handler is a
bug and reaches the caller as INTERNAL with a generic message.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request: its path (`spec.costs.commission`) and why."""

    field: str
    description: str


class AppError(Exception):
    """Base of every error Backcast reports to a caller on purpose."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = "INTERNAL"
    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(AppError):
    """The request is malformed; `violations` names every bad field."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: list[FieldViolation]) -> None:
        if not violations:
            raise ValueError("InvalidArgument needs at least one violation")
        first = violations[0]
        message = f"{first.field}: {first.description}"
        if len(violations) > 1:
            message += f" (and {len(violations) - 1} more field errors)"
        super().__init__(message)
        self.violations = violations

    @classmethod
    def of(cls, field: str, description: str) -> InvalidArgument:
        return cls([FieldViolation(field, description)])


class RequestIdReused(InvalidArgument):
    """A request id came back with a different spec than its first use."""

    reason = "REQUEST_ID_REUSED"

    def __init__(self, request_id: str, job_id: int) -> None:
        super().__init__(
            [
                FieldViolation(
                    "request_id",
                    f'request id "{request_id}" was already used for backtest '
                    f"{job_id} with a different request; use a new request id",
                )
            ]
        )
        self.request_id = request_id
        self.job_id = job_id


class InvalidCandleFile(InvalidArgument):
    """A candle file has a bad row; `line` is its 1-based line number."""

    reason = "INVALID_CANDLE_FILE"

    def __init__(self, line: int, problem: str) -> None:
        super().__init__([FieldViolation("file", f"line {line}: {problem}")])
        self.line = line
        self.problem = problem


class NotFound(AppError):
    code = grpc.StatusCode.NOT_FOUND
    reason = "NOT_FOUND"


class JobNotFound(NotFound):
    """No job with this id is visible to the caller."""

    reason = "BACKTEST_NOT_FOUND"

    def __init__(self, job_id: int) -> None:
        super().__init__(f"backtest {job_id} not found")
        self.job_id = job_id


class FailedPrecondition(AppError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "FAILED_PRECONDITION"


class JobAlreadyFinished(FailedPrecondition):
    """The job reached a terminal state that forbids the action."""

    reason = "BACKTEST_ALREADY_FINISHED"

    def __init__(self, job_id: int, state: str, action: str) -> None:
        super().__init__(f"backtest {job_id} already {state.lower()}; {action}")
        self.job_id = job_id
        self.state = state


class ResultNotReady(FailedPrecondition):
    """A result was asked of a job that has not succeeded."""

    reason = "RESULT_NOT_READY"

    def __init__(self, job_id: int, state: str) -> None:
        super().__init__(
            f"backtest {job_id} is {state.lower()}; results exist only once it "
            "has succeeded"
        )
        self.job_id = job_id
        self.state = state


class EquityCurveUnavailable(FailedPrecondition):
    """The full equity curve of a succeeded backtest cannot be rebuilt.

    `reason` tells why: its candles were re-imported since it ran
    (CANDLES_REIMPORTED), or its result holds no account fills
    (NO_ACCOUNT_FILLS).
    """

    def __init__(self, job_id: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.reason = reason


class LeaseLost(AppError):
    """The worker no longer holds the lease it is reporting on."""

    code = grpc.StatusCode.ABORTED
    reason = "LEASE_LOST"

    def __init__(self, job_id: int, fencing_token: int) -> None:
        super().__init__(
            f"lease on job {job_id} with fencing token {fencing_token} is no "
            "longer current; drop the attempt"
        )
        self.job_id = job_id
        self.fencing_token = fencing_token


class Unavailable(AppError):
    code = grpc.StatusCode.UNAVAILABLE
    reason = "UNAVAILABLE"
    retryable = True


class DatabaseUnavailable(Unavailable):
    """PostgreSQL could not be reached or dropped the connection."""

    reason = "DATABASE_UNAVAILABLE"

    def __init__(self) -> None:
        super().__init__("database unreachable; retry with backoff")


class BacktestFailed(Exception):
    """A backtest could not produce a result.

    Raised inside the engine; the worker reports it as the attempt's failure.
    `retryable` says whether another attempt could succeed.
    """

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
