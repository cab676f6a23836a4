"""How the scheduler turns a worker's queued pushes into stream messages."""

from __future__ import annotations

from session_support import SPEC

from backcast.jobqueue.jobs import Lease
from backcast.scheduler.servicer import ASSIGNMENTS_PER_MESSAGE, pushes_to_proto
from backcast.scheduler.sessions import Assign, Cancel, CancelReason, Push


def assign(job_id: int) -> Assign:
    lease = Lease(job_id, fencing_token=job_id * 10, attempt=1, worker="w1", spec={})
    return Assign(lease, SPEC)


def cancel(job_id: int) -> Cancel:
    return Cancel(job_id, fencing_token=job_id * 10, reason=CancelReason.CANCELLED)


def shapes(pushes: list[Push], takes_batches: bool) -> list[tuple[str, list[int]]]:
    """Each message's kind and the job ids it names."""
    out: list[tuple[str, list[int]]] = []
    for message in pushes_to_proto(pushes, takes_batches):
        kind = message.WhichOneof("message")
        if kind == "assignments":
            out.append((kind, [a.job_id for a in message.assignments.assignments]))
        elif kind == "assignment":
            out.append((kind, [message.assignment.job_id]))
        else:
            out.append((kind, [message.cancel.job_id]))
    return out


def test_a_cancel_between_assignments_splits_the_batch_and_keeps_the_order() -> None:
    pushes: list[Push] = [assign(1), assign(2), cancel(7), assign(3)]

    assert shapes(pushes, takes_batches=True) == [
        ("assignments", [1, 2]),
        ("cancel", [7]),
        ("assignments", [3]),
    ]


def test_a_worker_that_takes_no_batches_gets_one_assignment_per_message() -> None:
    pushes: list[Push] = [assign(1), assign(2), cancel(7)]

    assert shapes(pushes, takes_batches=False) == [
        ("assignment", [1]),
        ("assignment", [2]),
        ("cancel", [7]),
    ]


def test_a_claim_larger_than_one_message_is_split_in_order() -> None:
    n = ASSIGNMENTS_PER_MESSAGE + 3
    pushes: list[Push] = [assign(i) for i in range(1, n + 1)]

    messages = shapes(pushes, takes_batches=True)

    assert [len(ids) for _, ids in messages] == [ASSIGNMENTS_PER_MESSAGE, 3]
    assert [i for _, ids in messages for i in ids] == list(range(1, n + 1))


def test_assignment_fields_survive_batching() -> None:
    (message,) = pushes_to_proto([assign(4)], takes_batches=True)

    (assignment,) = message.assignments.assignments
    assert (assignment.job_id, assignment.fencing_token, assignment.attempt) == (
        4,
        40,
        1,
    )
    assert assignment.spec.instrument == "SYN-X"
