"""Seeded synthetic candles for "SYN-*" instruments, the same for any range.

A candle's values depend only on the instrument, the interval and the
candle's time, never on the requested range, so two backtests over
overlapping periods see the same prices. Every random number comes from a
generator seeded by (blake2b of name and interval, stream, chunk), where a
chunk is a fixed run of 4,096 consecutive indices on a grid anchored at the
epoch, so any index is reached without drawing what comes before it. Each
interval is its own series; only the mean price and volatility are shared.

The log price is built on three grids, aligned to multiples of their length
since 1970-01-01 UTC:

- Days carry regimes. A regime starts on a day whose draw exceeds a
  threshold (about one day in twelve) and at least every 64 days; it fixes
  a volatility level (calm, normal or turbulent) and a drift (none, or a
  trend up or down) that hold until the next start.
- Spans of 32 days carry the level. The move over span k is drawn from the
  drift and variance of its days' regimes; the level at the start of span k
  is the instrument's mean log price plus the moves of the 183 spans before
  it, each weighted by a factor that halves every two years of age: a
  random walk that drifts back to its mean, so prices stay plausible over
  decades.
- Candles fill each span with a random walk (drift and volatility of their
  day's regime) bent into a bridge between the levels at the span's two
  ends. Time in the bridge runs by variance, so turbulent days carry more of
  the span's move.

A candle opens at the previous candle's close; high and low extend the body
by half-normal wicks scaled by the candle's volatility, and volume grows
with volatility and with the size of the candle's move.

Cost: a range computes the whole spans it overlaps (in batches of about
130,000 candles, so memory stays flat) and the daily regimes of the 183
spans before it. A year of minute candles takes about 60 ms, 5,000,000
about half a second.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from backcast.engine.candles import Candles, FloatArray
from backcast.engine.spec import Interval, utc

# What a result records as the version of the candles it ran on. A series
# depends only on its name, so this changes only with the generator: raise
# it with any change to the values generated, which tells stored results
# that their candles can no longer be rebuilt.
DATA_VERSION = "synthetic:1"

DAY_SECONDS = 86_400
SECONDS_PER_YEAR = 365.25 * DAY_SECONDS
SPAN_DAYS = 32
REGIME_MAX_DAYS = 64
# P(standard normal > 1.383) is about 1/12: a regime lasts about 12 days.
REGIME_START_Z = 1.383
HALF_LIFE_DAYS = 2 * 365.25
LEVEL_SPANS = math.ceil(8 * HALF_LIFE_DAYS / SPAN_DAYS)
DRAW_CHUNK = 4_096
BATCH_CANDLES = 1 << 17
WICK_SCALE = 0.5

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PERSON = b"backcast-syn"
# Stream numbers keep the draws of each grid independent.
_PROFILE_STREAM, _DAY_STREAM, _SPAN_STREAM, _CANDLE_STREAM, _SHAPE_STREAM = range(5)


@dataclass(frozen=True)
class _Profile:
    """Fixed traits of one instrument, the same for every interval."""

    log_price: float  # mean log price the level returns to
    volatility: float  # annual, of log returns in a normal regime
    daily_volume: float  # units traded on a normal day


@dataclass(frozen=True, eq=False)
class _Regimes:
    """Annual volatility and drift of log price for consecutive days."""

    first_day: int
    volatility: FloatArray
    drift: FloatArray

    def days(self, first: int, count: int) -> tuple[FloatArray, FloatArray]:
        start = first - self.first_day
        return (
            self.volatility[start : start + count],
            self.drift[start : start + count],
        )


def synthetic_candles(
    instrument: str, interval: Interval, start_at: datetime, end_at: datetime
) -> Candles:
    """Candles of `instrument` whose open times lie in [start_at, end_at).

    Times are the multiples of the interval since the epoch in that range.
    """
    step = interval.seconds
    if DAY_SECONDS % step:
        raise ValueError(f"interval {interval.value} does not divide a day")
    step_micros = step * 1_000_000
    first = -(-_epoch_micros(start_at) // step_micros)
    stop = -(-_epoch_micros(end_at) // step_micros)
    if stop <= first:
        return _no_candles()

    profile = _profile(instrument)
    key = _seed_key(f"{instrument}\n{interval.value}")
    # One extra candle before the range supplies the first open.
    log_close, sigma = _walk(key, profile, step, first - 1, stop)
    return _candles(key, profile, step, first, log_close, sigma[1:])


def _candles(
    key: list[int],
    profile: _Profile,
    step: int,
    first: int,
    log_close: FloatArray,
    sigma: FloatArray,
) -> Candles:
    """Candles from `first` on, given log closes from the candle before it."""
    n = sigma.size
    columns = np.empty((5, n))
    for lo in range(0, n, BATCH_CANDLES):
        hi = min(n, lo + BATCH_CANDLES)
        _shape(
            key,
            profile,
            step,
            first + lo,
            log_close[lo : hi + 1],
            sigma[lo:hi],
            columns[:, lo:hi],
        )
    times = (first + np.arange(n, dtype=np.int64)) * step
    opens, highs, lows, closes, volumes = columns
    return Candles.of(times, opens, highs, lows, closes, volumes)


def _shape(
    key: list[int],
    profile: _Profile,
    step: int,
    first: int,
    log_close: FloatArray,
    sigma: FloatArray,
    out: FloatArray,
) -> None:
    """Fill rows open, high, low, close, volume of the candles after log_close[0]."""
    opens, highs, lows, closes, volumes = out
    draws = _normals(key, _SHAPE_STREAM, first, sigma.size, 3)
    log_open, log_close = log_close[:-1], log_close[1:]
    np.exp(log_open, out=opens)
    np.exp(log_close, out=closes)
    body_top = np.maximum(log_open, log_close)
    body_bottom = np.minimum(log_open, log_close)
    wick = WICK_SCALE * sigma
    np.exp(body_top + wick * np.abs(draws[:, 0]), out=highs)
    np.exp(body_bottom - wick * np.abs(draws[:, 1]), out=lows)
    # Max/min with the body again keep the OHLC order exact despite rounding.
    np.maximum(highs, np.maximum(opens, closes), out=highs)
    np.minimum(lows, np.minimum(opens, closes), out=lows)
    normal_sigma = profile.volatility * math.sqrt(step / SECONDS_PER_YEAR)
    per_candle = profile.daily_volume * step / DAY_SECONDS
    activity = (sigma / normal_sigma) * (0.5 + (body_top - body_bottom) / sigma)
    np.multiply(per_candle * activity, np.exp(0.5 * draws[:, 2] - 0.125), out=volumes)


def _walk(
    key: list[int], profile: _Profile, step: int, first: int, stop: int
) -> tuple[FloatArray, FloatArray]:
    """Log close and volatility of each candle in [first, stop)."""
    per_day = DAY_SECONDS // step
    span = SPAN_DAYS * per_day
    first_span, last_span = first // span, (stop - 1) // span
    regimes = _regimes(
        key,
        profile,
        (first_span - LEVEL_SPANS) * SPAN_DAYS,
        (last_span + 1) * SPAN_DAYS,
    )
    levels = _levels(key, profile, regimes, first_span, last_span)

    log_close = np.empty(stop - first)
    sigma = np.empty(stop - first)
    batch = max(1, BATCH_CANDLES // span)
    for lo in range(first_span, last_span + 1, batch):
        hi = min(lo + batch, last_span + 1)
        part_close, part_sigma = _fill_spans(
            key, regimes, levels[lo - first_span : hi - first_span + 1], step, lo, hi
        )
        # The part covers candles [lo * span, hi * span); keep what was asked.
        begin, end = max(first, lo * span), min(stop, hi * span)
        taken = slice(begin - lo * span, end - lo * span)
        log_close[begin - first : end - first] = part_close[taken]
        sigma[begin - first : end - first] = part_sigma[taken]
    return log_close, sigma


def _fill_spans(
    key: list[int],
    regimes: _Regimes,
    levels: FloatArray,
    step: int,
    lo: int,
    hi: int,
) -> tuple[FloatArray, FloatArray]:
    """Log closes and volatility of the candles of spans [lo, hi).

    Each span is a random walk bent into a bridge from levels[k] to
    levels[k + 1], its own start and end levels.
    """
    per_day = DAY_SECONDS // step
    span = SPAN_DAYS * per_day
    dt = step / SECONDS_PER_YEAR
    volatility, drift = regimes.days(lo * SPAN_DAYS, (hi - lo) * SPAN_DAYS)
    sigma = np.repeat(volatility * math.sqrt(dt), per_day)
    shocks = _normals(key, _CANDLE_STREAM, lo * span, (hi - lo) * span, 1)[:, 0]
    steps = np.repeat(drift * dt, per_day) + sigma * shocks
    walk = np.cumsum(steps.reshape(-1, span), axis=1)
    spent = np.cumsum((sigma * sigma).reshape(-1, span), axis=1)
    share = spent / spent[:, -1:]
    # Computed apart so the last candle of a span closes exactly on its level.
    bridge = walk - share * walk[:, -1:]
    start, end = levels[:-1, None], levels[1:, None]
    log_close = (1.0 - share) * start + share * end + bridge
    return log_close.ravel(), sigma


def _levels(
    key: list[int],
    profile: _Profile,
    regimes: _Regimes,
    first_span: int,
    last_span: int,
) -> FloatArray:
    """Log price at the start of spans first_span .. last_span + 1."""
    oldest = first_span - LEVEL_SPANS
    n_moves = last_span + 1 - oldest
    volatility, drift = regimes.days(oldest * SPAN_DAYS, n_moves * SPAN_DAYS)
    day_years = DAY_SECONDS / SECONDS_PER_YEAR
    # Running sums rather than a reduction: their order of additions is fixed,
    # so a span's move is bit-identical whatever range is generated.
    variance = np.cumsum((volatility**2 * day_years).reshape(-1, SPAN_DAYS), axis=1)
    trend = np.cumsum((drift * day_years).reshape(-1, SPAN_DAYS), axis=1)
    shocks = _normals(key, _SPAN_STREAM, oldest, n_moves, 1)[:, 0]
    moves = trend[:, -1] + np.sqrt(variance[:, -1]) * shocks

    n_levels = last_span - first_span + 2
    keep = 0.5 ** (SPAN_DAYS / HALF_LIFE_DAYS)
    levels = np.full(n_levels, profile.log_price)
    for age in range(1, LEVEL_SPANS + 1):
        offset = LEVEL_SPANS - age
        levels += keep ** (age - 1) * moves[offset : offset + n_levels]
    return levels


def _regimes(
    key: list[int], profile: _Profile, first_day: int, stop_day: int
) -> _Regimes:
    """Volatility and drift of each day in [first_day, stop_day)."""
    # A multiple of REGIME_MAX_DAYS always starts a regime, so looking back
    # to one is enough to know the regime of every requested day.
    anchor = (first_day // REGIME_MAX_DAYS) * REGIME_MAX_DAYS
    draws = _normals(key, _DAY_STREAM, anchor, stop_day - anchor, 3)
    days = np.arange(anchor, stop_day, dtype=np.int64)
    starts = (days % REGIME_MAX_DAYS == 0) | (draws[:, 0] > REGIME_START_Z)
    position = np.arange(days.size)
    regime_start = np.maximum.accumulate(np.where(starts, position, 0))
    kind, direction = draws[regime_start, 1], draws[regime_start, 2]
    level = np.select([kind < -0.5, kind > 1.0], [0.6, 1.8], default=1.0)
    # About four regimes in ten trend, at 1.6 to 5 log points a year.
    drift = np.where(np.abs(direction) > 0.8, 2.0 * direction, 0.0)
    cut = first_day - anchor
    return _Regimes(
        first_day=first_day,
        volatility=profile.volatility * level[cut:],
        drift=drift[cut:],
    )


def _profile(instrument: str) -> _Profile:
    draws = _normals(_seed_key(instrument), _PROFILE_STREAM, 0, 1, 3)[0]
    return _Profile(
        log_price=math.log(100.0) + 1.2 * float(draws[0]),
        volatility=float(np.clip(0.55 * math.exp(0.25 * float(draws[1])), 0.2, 1.5)),
        daily_volume=1e6 * math.exp(0.5 * float(draws[2])),
    )


def _normals(
    key: list[int], stream: int, first: int, count: int, width: int
) -> FloatArray:
    """Standard normals of shape (count, width) for indices [first, first + count).

    Row i depends only on (key, stream, width, i): each chunk of DRAW_CHUNK
    indices has its own generator.
    """
    if count <= 0:
        return np.empty((0, width))
    first_chunk, last_chunk = first // DRAW_CHUNK, (first + count - 1) // DRAW_CHUNK
    chunks = [
        _generator(key, stream, width, chunk).standard_normal((DRAW_CHUNK, width))
        for chunk in range(first_chunk, last_chunk + 1)
    ]
    joined = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
    skip = first - first_chunk * DRAW_CHUNK
    return joined[skip : skip + count]


def _generator(
    key: list[int], stream: int, width: int, chunk: int
) -> np.random.Generator:
    # Negative chunks (before 1970) map to distinct non-negative entropy.
    seed = np.random.SeedSequence([*key, stream, width, chunk % 2**64])
    return np.random.Generator(np.random.PCG64(seed))


def _seed_key(text: str) -> list[int]:
    """Four 32-bit words from blake2b of `text`, stable across processes."""
    digest = hashlib.blake2b(text.encode(), digest_size=16, person=_PERSON).digest()
    return [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]


def _epoch_micros(moment: datetime) -> int:
    return (utc(moment) - _EPOCH) // timedelta(microseconds=1)


def _no_candles() -> Candles:
    empty = np.empty(0)
    return Candles.of(np.empty(0, dtype=np.int64), empty, empty, empty, empty, empty)
