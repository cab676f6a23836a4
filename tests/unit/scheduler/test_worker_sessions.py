"""A worker session's view of whether the worker hears its assignments."""

from __future__ import annotations

from session_support import SPEC

from backcast.jobqueue.jobs import HeldLease, Lease
from backcast.scheduler.sessions import Heartbeat, WorkerSession

FRESH = 60.0


def heartbeat(*held: tuple[int, int], n_free_slots: int = 1) -> Heartbeat:
    leases = tuple(HeldLease(job_id, token) for job_id, token in held)
    return Heartbeat(n_free_slots=n_free_slots, held=leases, draining=False)


def deaf_session() -> WorkerSession:
    """A session whose one assignment went missing from two heartbeats."""
    session = WorkerSession("w1", n_slots=1, version="test")
    session.record_heartbeat(heartbeat())
    session.assign(Lease(7, 70, 1, "w1", {}), SPEC)
    session.record_heartbeat(heartbeat())
    session.record_heartbeat(heartbeat())
    return session


def test_a_worker_that_never_lists_its_assignment_is_given_nothing_more() -> None:
    session = deaf_session()

    assert session.capacity(FRESH) == 0


def test_an_assignment_that_arrives_late_shows_the_worker_hears_again() -> None:
    session = deaf_session()

    session.record_heartbeat(heartbeat((7, 70), n_free_slots=0))
    session.record_heartbeat(heartbeat(n_free_slots=1))

    assert session.capacity(FRESH) == 1


def test_a_report_of_the_missing_assignment_shows_the_worker_hears() -> None:
    session = deaf_session()

    session.finish(7, 70)

    assert session.capacity(FRESH) == 1


def test_a_lease_of_another_token_does_not_count_as_heard() -> None:
    session = deaf_session()

    session.record_heartbeat(heartbeat((7, 69), n_free_slots=1))

    assert session.capacity(FRESH) == 0
