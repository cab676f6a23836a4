"""Candles for a backtest: synthetic "SYN-*" series until candle import exists."""

from backcast.engine.candles import Candles
from backcast.engine.spec import SYNTHETIC_PREFIX, BacktestSpec
from backcast.errors import BacktestFailed
from backcast.marketdata.synthetic import synthetic_candles

__all__ = ["load_candles"]


def load_candles(spec: BacktestSpec) -> Candles:
    """The spec's candles in [start_at, end_at), or BacktestFailed.

    Only synthetic instruments exist so far; any other symbol fails for good
    (`retryable=False`), since another attempt would find no more data.
    """
    if not spec.instrument.startswith(SYNTHETIC_PREFIX):
        raise BacktestFailed(
            f'no market data for instrument "{spec.instrument}"; only synthetic '
            "SYN-* instruments are available until candle import exists",
            retryable=False,
        )
    return synthetic_candles(spec.instrument, spec.interval, spec.start_at, spec.end_at)
