"""When freed room is worth an early heartbeat: an idle slot at once, room
among the prefetched once half of it is free."""

from __future__ import annotations

import asyncio
from typing import Any

from backcast.compute.attempts import Assignment, AttemptRunner
from backcast.compute.reporting import AttemptRef, Delivery
from backcast.compute.slots import Outcome, Stopped


class HeldSlot:
    """A slot whose attempt ends when the test says so."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.outcome: asyncio.Future[Outcome] | None = None

    @property
    def busy(self) -> bool:
        return self.outcome is not None and not self.outcome.done()

    def run(self, spec: dict[str, Any], on_progress: Any) -> asyncio.Future[Outcome]:
        self.outcome = asyncio.get_running_loop().create_future()
        return self.outcome

    def finish(self) -> None:
        assert self.outcome is not None
        self.outcome.set_result(Stopped())


class HeldSlots:
    def __init__(self, n_slots: int) -> None:
        self.slots = [HeldSlot(index) for index in range(n_slots)]
        self.n_slots = n_slots

    @property
    def n_free(self) -> int:
        return sum(not slot.busy for slot in self.slots)

    def free_slot(self) -> HeldSlot | None:
        return next((slot for slot in self.slots if not slot.busy), None)

    def close(self) -> None:
        pass


class AcceptingReporter:
    async def report(self, ref: AttemptRef, report: Any) -> Delivery:
        return Delivery.ACCEPTED

    def close(self) -> None:
        pass


def runner_with(slots: HeldSlots, prefetch: int) -> AttemptRunner:
    return AttemptRunner(
        slots,  # type: ignore[arg-type]
        AcceptingReporter(),  # type: ignore[arg-type]
        "w1",
        prefetch=prefetch,
    )


def assign(runner: AttemptRunner, n: int) -> None:
    for job_id in range(1, n + 1):
        runner.start(Assignment(AttemptRef(job_id, 1, 1), {"spec": job_id}))


async def end(slot: HeldSlot) -> None:
    slot.finish()
    for _ in range(3):  # let the runner see the outcome and start the next
        await asyncio.sleep(0)


async def finish_running(slots: HeldSlots) -> None:
    [running] = [slot for slot in slots.slots if slot.busy]
    await end(running)


async def test_prefetch_room_is_announced_once_half_of_it_is_free() -> None:
    slots = HeldSlots(1)
    runner = runner_with(slots, prefetch=4)
    assign(runner, 5)  # one running, four waiting
    runner.changed.clear()

    await finish_running(slots)
    assert runner.n_free_slots() == 1
    assert not runner.changed.is_set()

    await finish_running(slots)
    assert runner.n_free_slots() == 2
    assert runner.changed.is_set()


async def test_idle_slot_is_announced_at_once() -> None:
    slots = HeldSlots(2)
    runner = runner_with(slots, prefetch=8)
    assign(runner, 2)  # both slots busy, nothing waiting
    runner.changed.clear()

    await end(slots.slots[0])

    assert runner.changed.is_set()


async def test_without_prefetch_every_freed_slot_is_announced() -> None:
    slots = HeldSlots(1)
    runner = runner_with(slots, prefetch=0)
    assign(runner, 1)
    runner.changed.clear()

    await finish_running(slots)

    assert runner.changed.is_set()
