"""The job store on a real PostgreSQL: submit, read, cancel and finish jobs."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import psycopg
import pytest
from psycopg import sql

from backcast.engine.results import TRADE_RECORD_BYTES, EquityCurve, TradeTable
from backcast.errors import (
    DatabaseUnavailable,
    JobAlreadyFinished,
    JobNotFound,
    LeaseLost,
    RequestIdReused,
    ResultNotReady,
)
from backcast.jobqueue import HeldLease, Job, JobState
from backcast.jobqueue.jobs import NewJob, ResultPage, StoredResult
from backcast.jobqueue.store import (
    JOB_CANCELS_CHANNEL,
    JOB_EVENTS_CHANNEL,
    JOBS_QUEUED_CHANNEL,
    JobStore,
)

Connection = psycopg.AsyncConnection[tuple[Any, ...]]

SPEC: dict[str, Any] = {
    "instrument": "SYN-BTC",
    "interval": "1h",
    "strategy": {"name": "sma_cross", "params": {"fast": 10, "slow": 30}},
}
ONE_POINT = EquityCurve(np.array([1_704_067_200]), np.array([10_000.0])).to_bytes()


def trade_records(n: int) -> bytes:
    """`n` distinct trades, an hour apart, in stored form."""
    hours = 3600 * np.arange(n, dtype=np.int64)
    values = (1.0 + np.arange(n, dtype=np.float64) for _ in range(5))
    return TradeTable(1_704_067_200 + hours, 1_704_070_800 + hours, *values).to_bytes()


def result_of(total_return: float, n_trades: int = 1) -> StoredResult:
    return StoredResult(
        metrics={"total_return": total_return, "n_trades": n_trades},
        trade_records=trade_records(n_trades),
        equity_points=ONE_POINT,
    )


def whole(result: StoredResult) -> ResultPage:
    """What `get_result` returns for every trade of `result`."""
    return ResultPage(
        metrics=result.metrics,
        trade_records=result.trade_records,
        total_trades=len(result.trade_records) // TRADE_RECORD_BYTES,
        equity_points=result.equity_points,
    )


async def read_result(
    store: JobStore, job_id: int, owner: str = "alice"
) -> tuple[Job, ResultPage]:
    return await store.get_result(owner, job_id, first_trade=0, max_trades=1_000)


async def submit(store: JobStore, owner: str = "alice", **kwargs: Any) -> int:
    options: dict[str, Any] = {"priority": 0, "max_attempts": 3, "request_id": None}
    options.update(kwargs)
    spec = options.pop("spec", SPEC)
    job = await store.submit(owner, spec, **options)
    return job.id


# --- submit -----------------------------------------------------------------


async def test_submitted_job_is_queued_with_database_timestamps(
    store: JobStore,
) -> None:
    job = await store.submit(
        "alice", SPEC, priority=5, max_attempts=2, request_id="req-1"
    )

    assert job.state is JobState.QUEUED
    assert (job.owner, job.spec, job.priority) == ("alice", SPEC, 5)
    assert (job.attempt, job.max_attempts, job.fencing_token) == (0, 2, 0)
    assert job.request_id == "req-1"
    assert job.created_at.tzinfo is not None
    assert job.updated_at == job.created_at
    assert job.started_at is None and job.finished_at is None
    assert job.summary is None


async def test_submit_with_the_same_request_id_returns_the_same_job(
    store: JobStore,
) -> None:
    first = await store.submit(
        "alice", SPEC, priority=1, max_attempts=3, request_id="req-1"
    )
    again = await store.submit(
        "alice",
        dict(reversed(SPEC.items())),
        priority=1,
        max_attempts=3,
        request_id="req-1",
    )

    assert again == first
    assert len(await store.list_jobs("alice", states=[], limit=10, before_id=None)) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"spec": {**SPEC, "interval": "1d"}},
        {"priority": 7},
        {"max_attempts": 1},
    ],
)
async def test_request_id_reused_for_another_request_is_rejected(
    store: JobStore, change: dict[str, Any]
) -> None:
    job_id = await submit(store, request_id="req-1")

    with pytest.raises(RequestIdReused) as raised:
        await submit(store, request_id="req-1", **change)

    assert raised.value.job_id == job_id
    assert raised.value.request_id == "req-1"


async def test_same_request_id_of_two_owners_makes_two_jobs(store: JobStore) -> None:
    alice_job = await submit(store, "alice", request_id="req-1")
    bob_job = await submit(store, "bob", request_id="req-1")

    assert alice_job != bob_job


async def test_submits_without_request_id_never_conflict(store: JobStore) -> None:
    first = await submit(store)
    second = await submit(store)

    assert first != second


async def test_concurrent_submits_with_one_request_id_create_exactly_one_job(
    database_url: str, store: JobStore
) -> None:
    other = await JobStore.open(database_url, min_size=4, max_size=8)
    try:
        stores = [store, other] * 10
        job_ids = await asyncio.gather(
            *(submit(each, request_id="same-key") for each in stores)
        )
    finally:
        await other.close()

    assert len(set(job_ids)) == 1
    jobs = await store.list_jobs("alice", states=[], limit=50, before_id=None)
    assert [job.id for job in jobs] == [job_ids[0]]


# --- reads ------------------------------------------------------------------


async def test_another_owners_job_is_not_found(store: JobStore) -> None:
    job_id = await submit(store, "alice")

    with pytest.raises(JobNotFound):
        await store.get("mallory", job_id)
    with pytest.raises(JobNotFound):
        await read_result(store, job_id, "mallory")
    with pytest.raises(JobNotFound):
        await store.cancel("mallory", job_id)
    assert await store.list_jobs("mallory", states=[], limit=10, before_id=None) == []
    assert (await store.get("alice", job_id)).state is JobState.QUEUED


async def test_unknown_job_is_not_found(store: JobStore) -> None:
    with pytest.raises(JobNotFound) as raised:
        await store.get("alice", 424242)

    assert raised.value.job_id == 424242


async def test_list_pages_newest_first_filtered_by_state(store: JobStore) -> None:
    job_ids = [await submit(store) for _ in range(7)]
    await submit(store, "bob")
    await store.cancel("alice", job_ids[1])
    await store.cancel("alice", job_ids[4])
    queued = [job_id for job_id in reversed(job_ids) if job_id not in job_ids[1:5:3]]

    first_page = await store.list_jobs(
        "alice", states=[JobState.QUEUED], limit=3, before_id=None
    )
    second_page = await store.list_jobs(
        "alice", states=[JobState.QUEUED], limit=3, before_id=first_page[-1].id
    )
    last_page = await store.list_jobs(
        "alice", states=[JobState.QUEUED], limit=3, before_id=second_page[-1].id
    )

    assert [job.id for job in first_page + second_page] == queued
    assert (len(first_page), len(second_page), last_page) == (3, 2, [])


async def test_list_with_several_states_or_none_returns_matching_jobs(
    store: JobStore,
) -> None:
    job_ids = [await submit(store) for _ in range(3)]
    await store.cancel("alice", job_ids[0])

    both = await store.list_jobs(
        "alice",
        states=[JobState.QUEUED, JobState.CANCELLED],
        limit=10,
        before_id=None,
    )
    every = await store.list_jobs("alice", states=[], limit=10, before_id=None)
    cancelled = await store.list_jobs(
        "alice", states=[JobState.CANCELLED], limit=10, before_id=None
    )

    assert [job.id for job in both] == job_ids[::-1]
    assert [job.id for job in every] == job_ids[::-1]
    assert [job.id for job in cancelled] == [job_ids[0]]


async def test_succeeded_job_carries_only_its_metrics_as_summary(
    store: JobStore,
) -> None:
    job_id = await submit(store)
    [lease] = await store.claim("w1", 1, lease_seconds=30)
    await store.complete(job_id, lease.fencing_token, result_of(0.25))

    job = await store.get("alice", job_id)
    [listed] = await store.list_jobs("alice", states=[], limit=10, before_id=None)

    assert job.summary == result_of(0.25).metrics
    assert listed.summary == job.summary
    assert (job.progress, job.finished_at is not None) == (1.0, True)


async def test_get_result_returns_the_stored_result(store: JobStore) -> None:
    job_id = await submit(store)
    [lease] = await store.claim("w1", 1, lease_seconds=30)
    await store.complete(job_id, lease.fencing_token, result_of(0.5))

    job, result = await read_result(store, job_id)

    assert job.state is JobState.SUCCEEDED
    assert result == whole(result_of(0.5))


async def test_get_result_reads_one_page_of_the_trades(store: JobStore) -> None:
    job_id = await submit(store)
    [lease] = await store.claim("w1", 1, lease_seconds=30)
    stored = result_of(0.5, n_trades=25)
    await store.complete(job_id, lease.fencing_token, stored)

    _, middle = await store.get_result("alice", job_id, first_trade=10, max_trades=10)
    _, last = await store.get_result("alice", job_id, first_trade=20, max_trades=10)
    _, beyond = await store.get_result("alice", job_id, first_trade=30, max_trades=10)

    assert middle.total_trades == last.total_trades == beyond.total_trades == 25
    records = stored.trade_records
    assert (
        middle.trade_records
        == records[10 * TRADE_RECORD_BYTES : 20 * TRADE_RECORD_BYTES]
    )
    assert last.trade_records == records[20 * TRADE_RECORD_BYTES :]
    assert beyond.trade_records == b""
    assert middle.metrics == stored.metrics
    assert middle.equity_points == stored.equity_points


async def test_result_of_an_unfinished_job_is_not_ready(store: JobStore) -> None:
    job_id = await submit(store)

    with pytest.raises(ResultNotReady) as raised:
        await read_result(store, job_id)

    assert raised.value.state == "QUEUED"


# --- cancel -----------------------------------------------------------------


async def test_cancel_of_a_queued_job_cancels_it_at_once(store: JobStore) -> None:
    job_id = await submit(store)

    job = await store.cancel("alice", job_id)

    assert job.state is JobState.CANCELLED
    assert job.error_reason == "CANCELLED"
    assert job.finished_at is not None
    assert await store.claim("w1", 5, lease_seconds=30) == []


async def test_cancel_of_a_running_job_waits_and_a_late_result_is_discarded(
    store: JobStore,
) -> None:
    job_id = await submit(store)
    [lease] = await store.claim("w1", 1, lease_seconds=30)

    cancelling = await store.cancel("alice", job_id)
    final = await store.complete(job_id, lease.fencing_token, result_of(0.5))

    assert cancelling.state is JobState.CANCELLING
    assert final is JobState.CANCELLED
    job = await store.get("alice", job_id)
    assert (job.state, job.error_reason, job.summary) == (
        JobState.CANCELLED,
        "CANCELLED",
        None,
    )
    with pytest.raises(ResultNotReady):
        await read_result(store, job_id)


async def test_worker_acknowledging_a_cancel_ends_the_job_cancelled(
    store: JobStore,
) -> None:
    job_id = await submit(store)
    [lease] = await store.claim("w1", 1, lease_seconds=30)
    await store.cancel("alice", job_id)

    first = await store.acknowledge_cancel(job_id, lease.fencing_token)
    repeated = await store.acknowledge_cancel(job_id, lease.fencing_token)

    assert first is repeated is JobState.CANCELLED
    assert await store.cancelling_jobs([job_id]) == []


async def test_failure_reported_while_cancelling_ends_cancelled(
    store: JobStore,
) -> None:
    job_id = await submit(store)
    [lease] = await store.claim("w1", 1, lease_seconds=30)
    await store.cancel("alice", job_id)

    state = await store.fail(
        job_id, lease.fencing_token, "boom", retryable=True, retry_delay_seconds=0
    )

    assert state is JobState.CANCELLED


async def test_cancel_repeated_leaves_the_job_as_it_is(store: JobStore) -> None:
    queued_id = await submit(store)
    running_id = await submit(store)
    await store.cancel("alice", queued_id)
    await store.claim("w1", 1, lease_seconds=30)
    await store.cancel("alice", running_id)

    cancelled = await store.cancel("alice", queued_id)
    cancelling = await store.cancel("alice", running_id)

    assert cancelled.state is JobState.CANCELLED
    assert cancelling.state is JobState.CANCELLING


async def test_cancel_of_a_finished_job_is_refused(store: JobStore) -> None:
    succeeded_id = await submit(store)
    failed_id = await submit(store)
    leases = {
        lease.job_id: lease for lease in await store.claim("w1", 2, lease_seconds=30)
    }
    await store.complete(succeeded_id, leases[succeeded_id].fencing_token, result_of(1))
    await store.fail(
        failed_id,
        leases[failed_id].fencing_token,
        "bad data",
        retryable=False,
        retry_delay_seconds=0,
    )

    with pytest.raises(JobAlreadyFinished) as succeeded:
        await store.cancel("alice", succeeded_id)
    with pytest.raises(JobAlreadyFinished) as failed:
        await store.cancel("alice", failed_id)

    assert succeeded.value.state == "SUCCEEDED"
    assert failed.value.state == "FAILED"


async def test_cancelling_jobs_names_only_those_being_cancelled(
    store: JobStore,
) -> None:
    job_ids = [await submit(store) for _ in range(3)]
    await store.claim("w1", 3, lease_seconds=30)
    await store.cancel("alice", job_ids[0])
    await store.cancel("alice", job_ids[2])

    assert await store.cancelling_jobs(job_ids + [999]) == [job_ids[0], job_ids[2]]
    assert await store.cancelling_jobs([]) == []


# --- finishing attempts -----------------------------------------------------


async def test_complete_repeated_returns_the_final_state_and_keeps_one_result(
    store: JobStore,
) -> None:
    job_id = await submit(store)
    [lease] = await store.claim("w1", 1, lease_seconds=30)

    first = await store.complete(job_id, lease.fencing_token, result_of(0.1))
    repeated = await store.complete(job_id, lease.fencing_token, result_of(0.9))

    assert first is repeated is JobState.SUCCEEDED
    _, result = await read_result(store, job_id)
    assert result == whole(result_of(0.1))


async def test_complete_many_stores_each_result_and_names_stale_tokens(
    store: JobStore,
) -> None:
    won, cancelled, stale = [await submit(store) for _ in range(3)]
    leases = {
        lease.job_id: lease for lease in await store.claim("w1", 3, lease_seconds=30)
    }
    await store.cancel("alice", cancelled)
    with_fills = dataclasses.replace(
        result_of(0.1, n_trades=3), account_fills=b"fills", data_version="v7"
    )

    states = await store.complete_many(
        [
            (won, leases[won].fencing_token, with_fills),
            (cancelled, leases[cancelled].fencing_token, result_of(0.2)),
            (stale, leases[stale].fencing_token + 1, result_of(0.3)),
        ]
    )

    assert states[won] is JobState.SUCCEEDED
    assert states[cancelled] is JobState.CANCELLED
    assert isinstance(states[stale], LeaseLost)
    _, page = await read_result(store, won)
    assert page == whole(with_fills)
    job, fills, version = await store.get_account_fills("alice", won)
    assert (fills, version) == (b"fills", "v7")
    assert (await store.get("alice", stale)).state is JobState.RUNNING
    with pytest.raises(ResultNotReady):
        await read_result(store, cancelled)


async def test_complete_many_repeated_returns_the_final_states_again(
    store: JobStore,
) -> None:
    job_ids = [await submit(store) for _ in range(2)]
    leases = await store.claim("w1", 2, lease_seconds=30)
    reports = [(lease.job_id, lease.fencing_token, result_of(0.1)) for lease in leases]

    first = await store.complete_many(reports)
    repeated = await store.complete_many(reports)

    assert first == repeated == dict.fromkeys(job_ids, JobState.SUCCEEDED)


async def test_complete_many_refuses_a_job_named_twice(store: JobStore) -> None:
    job_id = await submit(store)
    [lease] = await store.claim("w1", 1, lease_seconds=30)
    report = (job_id, lease.fencing_token, result_of(0.1))

    with pytest.raises(ValueError, match="twice"):
        await store.complete_many([report, report])

    assert (await store.get("alice", job_id)).state is JobState.RUNNING


async def test_retryable_failure_requeues_the_job_after_the_delay(
    store: JobStore, db_connection: Connection
) -> None:
    job_id = await submit(store)
    [lease] = await store.claim("w1", 1, lease_seconds=30)

    state = await store.fail(
        job_id,
        lease.fencing_token,
        "feed timeout",
        retryable=True,
        retry_delay_seconds=60,
    )

    assert state is JobState.QUEUED
    cursor = await db_connection.execute(
        "SELECT run_after - now() FROM jobs WHERE id = %s", [job_id]
    )
    [(delay,)] = await cursor.fetchall()
    assert 55 < delay.total_seconds() <= 60
    assert await store.claim("w1", 1, lease_seconds=30) == []
    job = await store.get("alice", job_id)
    assert (job.attempt, job.lease_holder, job.error_reason) == (1, None, None)


async def test_non_retryable_failure_fails_the_job_at_once(store: JobStore) -> None:
    job_id = await submit(store)
    [lease] = await store.claim("w1", 1, lease_seconds=30)

    state = await store.fail(
        job_id,
        lease.fencing_token,
        "unknown instrument",
        retryable=False,
        retry_delay_seconds=60,
    )

    job = await store.get("alice", job_id)
    assert state is job.state is JobState.FAILED
    assert (job.error_reason, job.error_message) == (
        "BACKTEST_ERROR",
        "unknown instrument",
    )


async def test_retryable_failure_on_the_last_attempt_fails_the_job(
    store: JobStore,
) -> None:
    job_id = await submit(store, max_attempts=1)
    [lease] = await store.claim("w1", 1, lease_seconds=30)

    state = await store.fail(
        job_id,
        lease.fencing_token,
        "feed timeout",
        retryable=True,
        retry_delay_seconds=0,
    )
    repeated = await store.fail(
        job_id,
        lease.fencing_token,
        "feed timeout",
        retryable=True,
        retry_delay_seconds=0,
    )

    assert state is repeated is JobState.FAILED


async def test_acknowledging_a_cancel_that_was_never_asked_loses_the_lease(
    store: JobStore,
) -> None:
    job_id = await submit(store)
    [lease] = await store.claim("w1", 1, lease_seconds=30)

    with pytest.raises(LeaseLost):
        await store.acknowledge_cancel(job_id, lease.fencing_token)

    assert (await store.get("alice", job_id)).state is JobState.RUNNING


async def test_finishing_an_unknown_job_loses_the_lease(store: JobStore) -> None:
    with pytest.raises(LeaseLost) as raised:
        await store.complete(777, 1, result_of(0))

    assert (raised.value.job_id, raised.value.fencing_token) == (777, 1)


# --- notifications ----------------------------------------------------------


async def listen(database_url: str, *channels: str) -> Connection:
    conn = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    for channel in channels:
        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
    return conn


async def received(conn: Connection, count: int) -> list[tuple[str, str]]:
    notices = conn.notifies(timeout=5.0, stop_after=count)
    return [(notice.channel, notice.payload) async for notice in notices]


async def test_a_batch_submit_notifies_the_queued_channel_once_and_no_watcher(
    database_url: str, store: JobStore
) -> None:
    conn = await listen(database_url, JOB_EVENTS_CHANNEL, JOBS_QUEUED_CHANNEL)
    items = [NewJob(SPEC, priority=0, max_attempts=3) for _ in range(3)]
    try:
        await store.submit_many("alice", items)
        await submit(store)
        # Within the wait, anything further would have arrived as well.
        notices = [(n.channel, n.payload) async for n in conn.notifies(timeout=1.0)]
    finally:
        await conn.close()

    # A new job cannot be watched before its insert commits, so only the
    # scheduler's channel hears of it, once per statement.
    assert notices == [(JOBS_QUEUED_CHANNEL, "")] * 2


async def test_cancel_of_a_running_job_notifies_the_cancel_channel(
    database_url: str, store: JobStore
) -> None:
    job_id = await submit(store)
    await store.claim("w1", 1, lease_seconds=30)
    conn = await listen(database_url, JOB_CANCELS_CHANNEL, JOB_EVENTS_CHANNEL)
    try:
        await store.cancel("alice", job_id)
        notices = await received(conn, 2)
    finally:
        await conn.close()

    assert sorted(notices) == sorted(
        [(JOB_CANCELS_CHANNEL, str(job_id)), (JOB_EVENTS_CHANNEL, str(job_id))]
    )


async def test_every_state_change_notifies_job_events(
    database_url: str, store: JobStore
) -> None:
    job_id = await submit(store)
    conn = await listen(database_url, JOB_EVENTS_CHANNEL)
    try:
        [lease] = await store.claim("w1", 1, lease_seconds=30)
        await store.renew(
            "w1", [HeldLease(job_id, lease.fencing_token, 0.5)], lease_seconds=30
        )
        await store.complete(job_id, lease.fencing_token, result_of(0.1))
        notices = await received(conn, 3)
    finally:
        await conn.close()

    assert notices == [(JOB_EVENTS_CHANNEL, str(job_id))] * 3


# --- availability -----------------------------------------------------------


async def test_unreachable_database_raises_database_unavailable() -> None:
    url = "postgresql://postgres@127.0.0.1:1/postgres?connect_timeout=1"

    with pytest.raises(DatabaseUnavailable):
        await JobStore.open(url, timeout_seconds=1.0)


async def test_store_recovers_when_the_server_closes_its_connections(
    store: JobStore, db_connection: Connection
) -> None:
    job_id = await submit(store)
    await db_connection.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    # pg_terminate_backend only signals: wait until the sessions are gone,
    # and with them the store's pooled connections.
    for _ in range(200):
        cursor = await db_connection.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        if (await cursor.fetchone()) == (0,):
            break
        await asyncio.sleep(0.01)

    assert (await store.get("alice", job_id)).id == job_id


async def test_calls_raise_database_unavailable_once_the_database_is_gone(
    postgres_server_url: str,
) -> None:
    name = f"backcast_gone_{secrets.token_hex(4)}"
    async with await psycopg.AsyncConnection.connect(
        postgres_server_url, autocommit=True
    ) as admin:
        await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        doomed = await JobStore.open(
            urlunsplit(urlsplit(postgres_server_url)._replace(path="/" + name)),
            timeout_seconds=1.0,
        )
        try:
            await admin.execute(
                sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name))
            )
            with pytest.raises(DatabaseUnavailable):
                await doomed.get("alice", 1)
        finally:
            await doomed.close()
