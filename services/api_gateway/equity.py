"""GetEquityCurve: the full equity curve, rebuilt from a result's account
fills and the candles its backtest ran on."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

from backcast.engine.results import AccountFills, EquityCurve, full_equity_curve
from backcast.engine.spec import SYNTHETIC_PREFIX, BacktestSpec
from backcast.errors import BacktestFailed, DatabaseUnavailable, EquityCurveUnavailable
from backcast.jobqueue.jobs import Job
from backcast.jobqueue.store import JobStore
from backcast.marketdata import VersionedCandles, load_versioned_candles
from backcast.telemetry import EVENT, JOB_ID
from backcast.v1 import backtest_service_pb2 as api

logger = logging.getLogger(__name__)

POINTS_PER_MESSAGE = 4_096
"""Points per GetEquityCurveResponse: 4,096 points are about 76 KiB."""

CANDLES_CHANGED = "CANDLES_CHANGED"
NO_ACCOUNT_FILLS = "NO_ACCOUNT_FILLS"


# LIMITATION: a curve is rebuilt whole before the first message is sent, and
# its candles stay in the gateway's candle cache: about 90 bytes per candle
# at the peak (a year of minutes, 47 MB; 5,000,000 candles, 450 MB) on a
# worker thread that shares the interpreter lock with the event loop; the
# messages are then built on the loop, about 1.4 s per million points on the
# reference machine (in 6 ms steps, one per message). Acceptable while full
# curves are fetched now and then for export; resolve by rebuilding and
# sending one message's range at a time, by columns of packed times and
# equity instead of EquityPoint messages, and by a smaller
# BACKCAST_MARKETDATA_CACHE_BYTES for the gateway.
class EquityCurves:
    """Rebuilds the full equity curve of a stored result.

    Candles are loaded through `backcast.marketdata` on a worker thread and
    kept in the process-wide candle cache (BACKCAST_MARKETDATA_CACHE_BYTES
    bounds it), so a curve asked for again skips the load.
    """

    def __init__(self, store: JobStore, marketdata_url: str) -> None:
        self._store = store
        self._url = marketdata_url

    async def full_curve(self, owner: str, job_id: int) -> EquityCurve:
        """Equity at every candle close of `owner`'s backtest `job_id`.

        Raises:
            JobNotFound: no such backtest for this owner.
            ResultNotReady: the backtest has not succeeded.
            EquityCurveUnavailable: the result holds no account fills, or
                the candles changed since the backtest ran.
            DatabaseUnavailable: the market-data database is out of reach.
        """
        job, data, version = await self._store.get_account_fills(owner, job_id)
        if data is None or version is None:
            raise EquityCurveUnavailable(
                job_id,
                NO_ACCOUNT_FILLS,
                f"backtest {job_id} was stored without the account fills a full "
                "equity curve is rebuilt from; GetResult has its downsampled "
                "curve, or submit it again",
            )
        fills = AccountFills.from_bytes(data)
        return await asyncio.to_thread(self._rebuild, job, fills, version)

    def _rebuild(self, job: Job, fills: AccountFills, version: str) -> EquityCurve:
        spec = BacktestSpec.from_dict(job.spec)
        loaded = self._load(job.id, spec)
        if loaded.data_version != version:
            # Synthetic series change only with the generator's version.
            synthetic = spec.instrument.startswith(SYNTHETIC_PREFIX)
            how = "changed" if synthetic else "were re-imported"
            raise _candles_changed(
                job.id,
                spec,
                f"{how} since it ran (data version {version} then, "
                f"{loaded.data_version} now)",
            )

        try:
            curve = full_equity_curve(
                fills, loaded.candles, spec.initial_cash, spec.interval.seconds
            )
        except ValueError as exc:
            raise _candles_changed(job.id, spec, "no longer hold its fills") from exc
        # The last close must give the stored final equity bit for bit; any
        # other value means the candles changed without a new data version.
        summary: dict[str, Any] = job.summary or {}
        if len(curve) != summary.get("n_candles") or (
            float(curve.equity[-1]) != summary.get("final_equity")
        ):
            raise _candles_changed(
                job.id, spec, "no longer give its final equity; they were altered"
            )

        logger.debug(
            "equity curve rebuilt",
            extra={
                EVENT: "equity_curve_rebuilt",
                JOB_ID: job.id,
                "n_points": len(curve),
                "n_fills": len(fills),
            },
        )
        return curve

    def _load(self, job_id: int, spec: BacktestSpec) -> VersionedCandles:
        try:
            return load_versioned_candles(spec, url=self._url)
        except BacktestFailed as exc:
            if exc.retryable:
                raise DatabaseUnavailable() from exc
            # The backtest ran on these candles, so a range that no longer
            # loads was changed by an import since.
            raise _candles_changed(job_id, spec, "no longer cover its period") from exc


# LIMITATION: an import replaces candles in place, so a backtest that ran
# before a re-import of its series keeps only its downsampled curve. Resolve,
# if needed, by keeping replaced chunks under their data version.
def _candles_changed(
    job_id: int, spec: BacktestSpec, what: str
) -> EquityCurveUnavailable:
    return EquityCurveUnavailable(
        job_id,
        CANDLES_CHANGED,
        f'the candles of backtest {job_id} ("{spec.instrument}" at '
        f"{spec.interval.value}) {what}; submit it again for the full equity "
        "curve on the current candles",
    )


def curve_messages(curve: EquityCurve) -> Iterator[api.GetEquityCurveResponse]:
    """The curve in messages of at most `POINTS_PER_MESSAGE` points.

    A curve of no points is one empty message, so the stream is never empty.
    """
    times, equity = curve.at.tolist(), curve.equity.tolist()
    for start in range(0, max(len(times), 1), POINTS_PER_MESSAGE):
        message = api.GetEquityCurveResponse()
        add_point = message.points.add
        stop = start + POINTS_PER_MESSAGE
        for at, value in zip(times[start:stop], equity[start:stop], strict=True):
            add_point(equity=value).time.seconds = at
        yield message
