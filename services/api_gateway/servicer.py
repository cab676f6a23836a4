"""BacktestService on the job store: proto in, domain calls, proto out."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc

from backcast.errors import FieldViolation, InvalidArgument
from backcast.gateway import validation
from backcast.gateway.candles import CandleStorage, receive_upload
from backcast.gateway.equity import EquityCurves, curve_messages
from backcast.gateway.owners import owner_from_metadata
from backcast.gateway.pagination import (
    PageTokens,
    backtests_query,
    trades_query,
)
from backcast.gateway.submissions import new_job_from_proto, new_jobs_from_proto
from backcast.gateway.validation import BACKTESTS_PAGE, TRADES_PAGE
from backcast.gateway.watch import JobEvents, watch_job
from backcast.jobqueue.jobs import JobState
from backcast.jobqueue.results import result_of_page
from backcast.jobqueue.store import JobStore
from backcast.rpc import translate
from backcast.telemetry import EVENT, JOB_ID, OWNER
from backcast.v1 import backtest_service_pb2 as api
from backcast.v1 import backtest_service_pb2_grpc

logger = logging.getLogger(__name__)

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


# LIMITATION: the caller's deadline is not passed on to database statements,
# so a slow query outlives an impatient caller. Resolve with a
# statement_timeout derived from context.time_remaining().
class BacktestServicer(backtest_service_pb2_grpc.BacktestServiceServicer):
    """Serves the public API for the owner named in each call's metadata."""

    def __init__(
        self,
        store: JobStore,
        events: JobEvents,
        page_tokens: PageTokens,
        candles: CandleStorage,
        *,
        watch_poll_seconds: float,
    ) -> None:
        self._store = store
        self._candles = candles
        self._curves = EquityCurves(store, candles.url)
        self._events = events
        self._tokens = page_tokens
        self._watch_poll_seconds = watch_poll_seconds

    async def SubmitBacktest(
        self, request: api.SubmitBacktestRequest, context: Context
    ) -> api.SubmitBacktestResponse:
        owner = _owner(context)
        new_job = new_job_from_proto(request)

        job = await self._store.submit(
            owner,
            new_job.spec,
            priority=new_job.priority,
            max_attempts=new_job.max_attempts,
            request_id=new_job.request_id,
        )
        logger.info(
            "backtest submitted",
            extra={EVENT: "backtest_submitted", JOB_ID: job.id, OWNER: owner},
        )
        return api.SubmitBacktestResponse(backtest=translate.job_to_proto(job))

    async def SubmitBacktests(
        self, request: api.SubmitBacktestsRequest, context: Context
    ) -> api.SubmitBacktestsResponse:
        owner = _owner(context)
        new_jobs = new_jobs_from_proto(request)

        jobs = await self._store.submit_many(owner, new_jobs)
        logger.info(
            "backtests submitted",
            extra={EVENT: "backtests_submitted", OWNER: owner, "n_jobs": len(jobs)},
        )
        return api.SubmitBacktestsResponse(
            backtests=[translate.job_to_proto(job) for job in jobs]
        )

    async def GetStatus(
        self, request: api.GetStatusRequest, context: Context
    ) -> api.GetStatusResponse:
        owner = _owner(context)
        validation.raise_if_any(validation.backtest_id_violations(request.backtest_id))

        job = await self._store.get(owner, request.backtest_id)
        attempts = await self._store.attempts(owner, request.backtest_id)
        return api.GetStatusResponse(
            backtest=translate.job_to_proto(job),
            attempts=[translate.attempt_to_proto(attempt) for attempt in attempts],
        )

    async def GetResult(
        self, request: api.GetResultRequest, context: Context
    ) -> api.GetResultResponse:
        owner = _owner(context)
        violations = validation.backtest_id_violations(request.backtest_id)
        violations += validation.page_size_violations(request.page_size, TRADES_PAGE)
        query = trades_query(owner, request.backtest_id)
        offset = None
        if request.page_token:
            offset = validation.checked(
                violations, lambda: self._tokens.decode(request.page_token, query)
            )
        validation.raise_if_any(violations)

        size = validation.resolved_page_size(request.page_size, TRADES_PAGE)
        first = offset or 0
        job, page = await self._store.get_result(
            owner, request.backtest_id, first_trade=first, max_trades=size
        )
        result = result_of_page(page)
        after = first + len(result.trades)
        more = after < page.total_trades
        next_token = self._tokens.encode(after, query) if more else ""
        return api.GetResultResponse(
            backtest_id=job.id,
            result=translate.result_to_proto(result),
            next_page_token=next_token,
            total_trades=page.total_trades,
        )

    async def GetEquityCurve(
        self, request: api.GetEquityCurveRequest, context: Context
    ) -> AsyncIterator[api.GetEquityCurveResponse]:
        owner = _owner(context)
        validation.raise_if_any(validation.backtest_id_violations(request.backtest_id))

        curve = await self._curves.full_curve(owner, request.backtest_id)
        for message in curve_messages(curve):
            yield message

    async def ListBacktests(
        self, request: api.ListBacktestsRequest, context: Context
    ) -> api.ListBacktestsResponse:
        owner = _owner(context)
        violations: list[FieldViolation] = []
        states = _states_of(request, violations)
        violations += validation.page_size_violations(request.page_size, BACKTESTS_PAGE)
        query = backtests_query(owner, states)
        before_id = None
        if request.page_token:
            before_id = validation.checked(
                violations, lambda: self._tokens.decode(request.page_token, query)
            )
        validation.raise_if_any(violations)

        size = validation.resolved_page_size(request.page_size, BACKTESTS_PAGE)
        # One more than the page tells whether another page follows.
        jobs = await self._store.list_jobs(
            owner, states=states, limit=size + 1, before_id=before_id
        )
        page = jobs[:size]
        next_token = ""
        if len(jobs) > size:
            next_token = self._tokens.encode(page[-1].id, query)
        return api.ListBacktestsResponse(
            backtests=[translate.job_to_proto(job) for job in page],
            next_page_token=next_token,
        )

    async def CancelBacktest(
        self, request: api.CancelBacktestRequest, context: Context
    ) -> api.CancelBacktestResponse:
        owner = _owner(context)
        validation.raise_if_any(validation.backtest_id_violations(request.backtest_id))

        job = await self._store.cancel(owner, request.backtest_id)
        logger.info(
            "backtest cancel requested",
            extra={
                EVENT: "backtest_cancel_requested",
                JOB_ID: job.id,
                OWNER: owner,
                "state": job.state.value,
            },
        )
        return api.CancelBacktestResponse(backtest=translate.job_to_proto(job))

    async def WatchBacktest(
        self, request: api.WatchBacktestRequest, context: Context
    ) -> AsyncIterator[api.WatchBacktestResponse]:
        owner = _owner(context)
        validation.raise_if_any(validation.backtest_id_violations(request.backtest_id))

        changes = watch_job(
            self._store,
            self._events,
            owner,
            request.backtest_id,
            poll_seconds=self._watch_poll_seconds,
        )
        async for job in changes:
            yield api.WatchBacktestResponse(backtest=translate.job_to_proto(job))

    async def ListStrategies(
        self, request: api.ListStrategiesRequest, context: Context
    ) -> api.ListStrategiesResponse:
        # The registry is compiled in: no owner, no database.
        return translate.strategies_to_proto()

    # LIMITATION: candles are shared by every owner and any caller may import
    # or replace them; resolve with authentication, by a role allowed to
    # import.
    async def ImportCandles(
        self,
        request_iterator: AsyncIterator[api.ImportCandlesRequest],
        context: Context,
    ) -> api.ImportCandlesResponse:
        owner = _owner(context)
        upload = await receive_upload(request_iterator)

        imported = await self._candles.import_candles(upload)
        logger.info(
            "candles imported",
            extra={
                EVENT: "candles_imported",
                "instrument": upload.instrument,
                "interval": upload.interval.value,
                "n_candles": imported.n_imported,
                OWNER: owner,
            },
        )
        return api.ImportCandlesResponse(
            coverage=translate.coverage_to_proto(imported.coverage),
            n_imported=imported.n_imported,
        )

    async def ListInstruments(
        self, request: api.ListInstrumentsRequest, context: Context
    ) -> api.ListInstrumentsResponse:
        # Candles are shared by every owner, so the listing is the same for all.
        series = await self._candles.list_series()
        return api.ListInstrumentsResponse(
            instruments=[translate.coverage_to_proto(c) for c in series]
        )


def _owner(context: Context) -> str:
    return owner_from_metadata(context.invocation_metadata())


def _states_of(
    request: api.ListBacktestsRequest, violations: list[FieldViolation]
) -> list[JobState]:
    states: list[JobState] = []
    for i, code in enumerate(request.states):
        try:
            state = translate.state_from_proto(code, f"states[{i}]")
        except InvalidArgument as exc:
            violations += exc.violations
            continue
        if state not in states:
            states.append(state)
    return states
