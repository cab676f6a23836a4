"""Request-level checks of BacktestService calls, besides the spec itself.

Checks return every violation they find, so one reply can name all bad
fields; `raise_if_any` turns the collected list into InvalidArgument.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from backcast.errors import FieldViolation, InvalidArgument
from backcast.v1 import backtest_service_pb2 as api

T = TypeVar("T")

MIN_PRIORITY = -100
MAX_PRIORITY = 100
DEFAULT_MAX_ATTEMPTS = 3
MAX_MAX_ATTEMPTS = 10
MAX_REQUEST_ID_CHARS = 128


@dataclass(frozen=True)
class PageSizeRule:
    """What page_size 0 means, and the size larger requests are cut to."""

    default: int
    maximum: int


BACKTESTS_PAGE = PageSizeRule(default=50, maximum=500)
TRADES_PAGE = PageSizeRule(default=1_000, maximum=10_000)


def submit_violations(request: api.SubmitBacktestRequest) -> list[FieldViolation]:
    """Problems of a submission outside its spec (which translate checks)."""
    violations: list[FieldViolation] = []
    if not MIN_PRIORITY <= request.priority <= MAX_PRIORITY:
        violations.append(
            FieldViolation(
                "priority",
                f"{request.priority} is outside [{MIN_PRIORITY}, {MAX_PRIORITY}]",
            )
        )
    if request.max_attempts != 0 and not 1 <= request.max_attempts <= MAX_MAX_ATTEMPTS:
        violations.append(
            FieldViolation(
                "max_attempts",
                f"{request.max_attempts} is outside [1, {MAX_MAX_ATTEMPTS}]; "
                f"0 means {DEFAULT_MAX_ATTEMPTS}",
            )
        )
    violations += request_id_violations(request.request_id)
    return violations


def request_id_violations(request_id: str) -> list[FieldViolation]:
    if len(request_id) > MAX_REQUEST_ID_CHARS:
        return [
            FieldViolation(
                "request_id",
                f"{len(request_id)} characters long; at most "
                f"{MAX_REQUEST_ID_CHARS} are allowed (a UUID4 is recommended)",
            )
        ]
    if not request_id.isprintable():
        return [
            FieldViolation(
                "request_id",
                "holds control characters; use printable characters only "
                "(a UUID4 is recommended)",
            )
        ]
    return []


def resolved_max_attempts(max_attempts: int) -> int:
    return max_attempts or DEFAULT_MAX_ATTEMPTS


def backtest_id_violations(backtest_id: int) -> list[FieldViolation]:
    if backtest_id > 0:
        return []
    return [
        FieldViolation(
            "backtest_id", f"{backtest_id} is not a backtest id; ids are positive"
        )
    ]


def page_size_violations(page_size: int, rule: PageSizeRule) -> list[FieldViolation]:
    if page_size >= 0:
        return []
    return [
        FieldViolation(
            "page_size",
            f"{page_size} is negative; use 1 to {rule.maximum}, or 0 for "
            f"{rule.default}",
        )
    ]


def resolved_page_size(page_size: int, rule: PageSizeRule) -> int:
    """The page size to serve: the default for 0, at most the maximum."""
    if page_size == 0:
        return rule.default
    return min(page_size, rule.maximum)


def checked(violations: list[FieldViolation], convert: Callable[[], T]) -> T | None:
    """`convert()`, or None with its violations added when it is rejected."""
    try:
        return convert()
    except InvalidArgument as exc:
        violations += exc.violations
        return None


def raise_if_any(violations: list[FieldViolation]) -> None:
    if violations:
        raise InvalidArgument(violations)
