"""Synthetic candles: deterministic per candle time, valid, on the grid."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from backcast.engine.candles import Candles
from backcast.engine.spec import Interval
from backcast.marketdata.synthetic import synthetic_candles

JAN_1 = datetime(2024, 1, 1, tzinfo=UTC)


def load(
    start: datetime,
    end: datetime,
    interval: Interval = Interval.ONE_MINUTE,
    instrument: str = "SYN-BTCUSD",
) -> Candles:
    return synthetic_candles(instrument, interval, start, end)


def assert_same_where_times_overlap(one: Candles, other: Candles) -> None:
    shared, mine, theirs = np.intersect1d(
        one.times, other.times, assume_unique=True, return_indices=True
    )
    assert shared.size > 0
    for column in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(
            getattr(one, column)[mine], getattr(other, column)[theirs], err_msg=column
        )


@pytest.mark.parametrize(
    ("interval", "first", "second"),
    [
        # Minutes across a 32-day span boundary (2024-01-22) and a batch.
        (
            Interval.ONE_MINUTE,
            (JAN_1, JAN_1 + timedelta(days=100)),
            (JAN_1 + timedelta(days=20, hours=7), JAN_1 + timedelta(days=23)),
        ),
        # A range starting in another span groups spans into other batches.
        (
            Interval.ONE_MINUTE,
            (JAN_1, JAN_1 + timedelta(days=100)),
            (JAN_1 + timedelta(days=50), JAN_1 + timedelta(days=53)),
        ),
        (
            Interval.FIFTEEN_MINUTES,
            (JAN_1, JAN_1 + timedelta(days=40)),
            (JAN_1 + timedelta(days=39), JAN_1 + timedelta(days=80)),
        ),
        # Days over decades, before and after 1970.
        (
            Interval.ONE_DAY,
            (datetime(1960, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC)),
            (datetime(1969, 12, 1, tzinfo=UTC), datetime(1970, 2, 1, tzinfo=UTC)),
        ),
    ],
)
def test_overlapping_ranges_give_identical_candles(
    interval: Interval,
    first: tuple[datetime, datetime],
    second: tuple[datetime, datetime],
) -> None:
    assert_same_where_times_overlap(
        load(*first, interval=interval), load(*second, interval=interval)
    )


def test_candles_lie_on_the_interval_grid_inside_the_range() -> None:
    start = datetime(2024, 3, 5, 10, 7, 30, tzinfo=UTC)
    end = datetime(2024, 3, 6, 10, 0, tzinfo=UTC)

    candles = load(start, end, Interval.FIFTEEN_MINUTES)

    assert candles.times[0] == int(datetime(2024, 3, 5, 10, 15, tzinfo=UTC).timestamp())
    assert candles.times[-1] == int(datetime(2024, 3, 6, 9, 45, tzinfo=UTC).timestamp())
    assert np.all(candles.times % 900 == 0)
    assert np.all(np.diff(candles.times) == 900)


def test_range_without_a_grid_time_has_no_candles() -> None:
    start = datetime(2024, 3, 5, 10, 0, 10, tzinfo=UTC)

    assert len(load(start, start + timedelta(seconds=40))) == 0
    assert len(load(start, start)) == 0


@pytest.mark.parametrize(
    ("interval", "days"),
    [
        (Interval.ONE_MINUTE, 150),
        (Interval.FOUR_HOURS, 3_000),
        (Interval.ONE_DAY, 20_000),
    ],
)
def test_candles_are_valid_ohlcv(interval: Interval, days: int) -> None:
    candles = load(JAN_1 - timedelta(days=days), JAN_1, interval)

    assert len(candles) == days * 86_400 // interval.seconds
    assert np.all(candles.high >= np.maximum(candles.open, candles.close))
    assert np.all(candles.low <= np.minimum(candles.open, candles.close))
    assert np.all(candles.low > 0)
    assert np.all(candles.volume > 0)


def test_each_candle_opens_at_the_previous_close() -> None:
    candles = load(JAN_1, JAN_1 + timedelta(days=3))

    np.testing.assert_array_equal(candles.open[1:], candles.close[:-1])


def test_prices_stay_plausible_over_decades() -> None:
    candles = load(
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(2040, 1, 1, tzinfo=UTC),
        Interval.ONE_DAY,
    )

    assert candles.close.max() / candles.close.min() < 1_000
    daily = np.diff(np.log(candles.close))
    # A volatility between 20% and 150% a year, with calm and turbulent spells.
    assert 0.2 < daily.std() * np.sqrt(365.25) < 1.5
    by_quarter = daily[: daily.size // 91 * 91].reshape(-1, 91).std(axis=1)
    assert by_quarter.max() > 2 * by_quarter.min()


def test_instruments_have_their_own_series() -> None:
    end = JAN_1 + timedelta(days=1)

    one = load(JAN_1, end, instrument="SYN-AAA")
    other = load(JAN_1, end, instrument="SYN-AAB")

    assert not np.allclose(one.close, other.close, rtol=1e-3)


def test_series_do_not_change_between_releases() -> None:
    # Stored results of SYN-* backtests stay reproducible only while these
    # values hold; a change here is a change of every synthetic series.
    candles = load(JAN_1, JAN_1 + timedelta(days=3), Interval.ONE_DAY)

    np.testing.assert_allclose(
        candles.close,
        [514.6501213166179, 512.3614965292908, 520.2582687911163],
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        candles.volume,
        [557065.5895298644, 456882.74374032795, 587885.6769666264],
        rtol=1e-12,
    )
