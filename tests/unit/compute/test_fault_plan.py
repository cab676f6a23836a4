"""BACKCAST_FAULTS: what parses, what is refused, and which backtests a
fault strikes."""

from __future__ import annotations

import re

import pytest

from backcast.compute.faults import Fault, FaultPlan, parse_faults
from backcast.config import ConfigError
from backcast.errors import BacktestFailed


def test_faults_parse_with_and_without_an_instrument() -> None:
    faults = parse_faults("attempt.start@SYN-A=sleep(0.5); attempt.finish=crash")

    assert faults == (
        Fault("attempt.start", "SYN-A", "sleep", "0.5"),
        Fault("attempt.finish", None, "crash", ""),
    )


def test_empty_setting_injects_nothing() -> None:
    assert parse_faults("") == ()
    assert parse_faults(" ; ") == ()


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("attempt.start", "is not POINT[@INSTRUMENT]=ACTION"),
        ("attempt.begin=crash", "unknown point"),
        ("attempt.start=explode", "unknown action"),
        ("attempt.start=sleep(soon)", "sleep needs a number"),
        ("attempt.start=exit", "exit needs a number"),
        ("attempt.start=fail(sometimes)", "fail takes retryable or fatal"),
    ],
)
def test_malformed_fault_is_refused_with_its_text(text: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(complaint)) as refused:
        parse_faults(text)

    assert text in str(refused.value)


def test_fault_strikes_only_its_point_and_instrument() -> None:
    plan = FaultPlan(parse_faults("attempt.start@SYN-BAD=fail(fatal)"))

    plan.strike("attempt.start", "SYN-GOOD")
    plan.strike("attempt.finish", "SYN-BAD")
    with pytest.raises(BacktestFailed) as failed:
        plan.strike("attempt.start", "SYN-BAD")

    assert not failed.value.retryable
