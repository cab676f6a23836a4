"""Growing, jittered delays between retries of a call or a reconnect."""

from __future__ import annotations

import random


class Backoff:
    """Delays that double from `initial_seconds` up to `cap_seconds`.

    Each delay is drawn uniformly between `initial_seconds` and the current
    ceiling, so that workers cut off together do not return together.
    """

    def __init__(
        self,
        initial_seconds: float = 0.1,
        cap_seconds: float = 5.0,
        rng: random.Random | None = None,
    ) -> None:
        self._initial_seconds = initial_seconds
        self._cap_seconds = cap_seconds
        self._rng = rng or random.Random()
        self._n_failures = 0

    def next_delay(self) -> float:
        ceiling = min(self._cap_seconds, self._initial_seconds * 2**self._n_failures)
        self._n_failures = min(self._n_failures + 1, 30)
        return self._rng.uniform(self._initial_seconds, ceiling)

    def reset(self) -> None:
        self._n_failures = 0
