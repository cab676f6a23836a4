"""Delay before a failed attempt's job may run again."""

from __future__ import annotations

import random

BASE_SECONDS = 1.0
CAP_SECONDS = 60.0

_RNG = random.Random()


def retry_delay_seconds(attempt: int, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter after attempt number `attempt`.

    Full jitter draws uniformly from [0, min(cap, base * 2^(attempt-1))], which
    spreads retries of jobs that failed together (M. Brooker, "Exponential
    Backoff And Jitter", AWS Architecture Blog, 2015).
    """
    exponent = min(max(attempt, 1) - 1, 30)
    ceiling = min(CAP_SECONDS, BASE_SECONDS * 2**exponent)
    return (rng or _RNG).uniform(0.0, ceiling)
