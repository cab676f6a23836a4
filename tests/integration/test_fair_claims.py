"""Fair claims: within a priority, owners take slots in turn, however large
one owner's backlog; higher priority still goes first."""

from __future__ import annotations

from collections import Counter
from typing import Any

from test_leases import SPEC, result_of

from backcast.jobqueue.store import JobStore


async def submit_many(
    store: JobStore, owner: str, n: int, *, priority: int = 0
) -> list[int]:
    ids = []
    for _ in range(n):
        job = await store.submit(
            owner, SPEC, priority=priority, max_attempts=3, request_id=None
        )
        ids.append(job.id)
    return ids


def owner_counts(leases: list[Any], owner_of: dict[int, str]) -> Counter[str]:
    return Counter(owner_of[lease.job_id] for lease in leases)


async def test_light_owners_get_slots_beside_a_heavy_backlog(store: JobStore) -> None:
    owner_of = dict.fromkeys(await submit_many(store, "heavy", 200), "heavy")
    for light in ("light-1", "light-2", "light-3"):
        owner_of |= dict.fromkeys(await submit_many(store, light, 3), light)

    leases = await store.claim("w1", 4, lease_seconds=30)

    assert owner_counts(leases, owner_of) == Counter(
        {"heavy": 1, "light-1": 1, "light-2": 1, "light-3": 1}
    )


async def test_owner_with_fewer_jobs_running_goes_first(store: JobStore) -> None:
    owner_of = dict.fromkeys(await submit_many(store, "heavy", 20), "heavy")
    await store.claim("w1", 3, lease_seconds=30)  # heavy now runs three
    owner_of |= dict.fromkeys(await submit_many(store, "light-1", 5), "light-1")

    leases = await store.claim("w2", 3, lease_seconds=30)

    # light-1 runs none, so it takes turns 1-3 before heavy's turn 4.
    assert owner_counts(leases, owner_of) == Counter({"light-1": 3})


async def test_owners_with_equal_running_take_turns_by_their_last_turn(
    store: JobStore,
) -> None:
    owner_of: dict[int, str] = {}
    for owner in ("heavy", "light-1", "light-2"):
        owner_of |= dict.fromkeys(await submit_many(store, owner, 10), owner)

    served = []
    for _ in range(6):
        # One slot at a time, each job done before the next claim, so every
        # owner always has zero running: only the last turn tells them apart.
        [lease] = await store.claim("w1", 1, lease_seconds=30)
        await store.complete(lease.job_id, lease.fencing_token, result_of(0.0))
        served.append(owner_of[lease.job_id])

    # Round robin: each owner once in every three turns.
    assert len(set(served[:3])) == 3
    assert served[3:] == served[:3]


async def test_higher_priority_goes_first_whatever_the_turns(store: JobStore) -> None:
    owner_of = dict.fromkeys(await submit_many(store, "light-1", 5), "light-1")
    urgent = await submit_many(store, "heavy", 3, priority=10)
    owner_of |= dict.fromkeys(urgent, "heavy")
    await store.claim("w1", 2, lease_seconds=30)  # heavy's urgent jobs run

    [lease] = await store.claim("w2", 1, lease_seconds=30)

    # heavy already runs two, light-1 none; priority still wins.
    assert lease.job_id == urgent[2]


async def test_fair_claims_never_hand_out_a_job_twice(store: JobStore) -> None:
    ids = set()
    for owner in ("heavy", "light-1", "light-2"):
        ids |= set(await submit_many(store, owner, 30 if owner == "heavy" else 7))

    claimed: list[int] = []
    while batch := await store.claim("w1", 4, lease_seconds=30):
        claimed.extend(lease.job_id for lease in batch)

    assert sorted(claimed) == sorted(ids)
