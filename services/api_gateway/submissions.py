"""SubmitBacktest requests checked and turned into what the store queues."""

from __future__ import annotations

from collections.abc import Sequence

from backcast.errors import FieldViolation, InvalidArgument
from backcast.gateway import validation
from backcast.jobqueue.jobs import NewJob
from backcast.rpc import translate
from backcast.v1 import backtest_service_pb2 as api

# Backtests one SubmitBacktests call may carry: one transaction, and a
# response well under the message size limit.
MAX_BATCH = 1_000


def new_job_from_proto(request: api.SubmitBacktestRequest) -> NewJob:
    """The job a SubmitBacktest call asks for; InvalidArgument if invalid."""
    violations: list[FieldViolation] = []
    job = _checked_job(request, "", violations)
    if job is None:
        raise InvalidArgument(violations)
    return job


def new_jobs_from_proto(request: api.SubmitBacktestsRequest) -> list[NewJob]:
    """Every job a SubmitBacktests call asks for, or InvalidArgument naming
    each bad field as `requests[i].<field>` when any is invalid."""
    n = len(request.requests)
    if not 1 <= n <= MAX_BATCH:
        raise InvalidArgument.of(
            "requests", f"holds {n} backtests; send 1 to {MAX_BATCH} per call"
        )
    violations: list[FieldViolation] = []
    jobs = [
        _checked_job(item, f"requests[{index}].", violations)
        for index, item in enumerate(request.requests)
    ]
    violations += _repeated_request_ids(request.requests)
    if violations:
        raise InvalidArgument(violations)
    return [job for job in jobs if job is not None]


def _checked_job(
    request: api.SubmitBacktestRequest, prefix: str, violations: list[FieldViolation]
) -> NewJob | None:
    found: list[FieldViolation] = []
    spec = None
    if request.HasField("spec"):
        spec = validation.checked(
            found, lambda: translate.spec_from_proto(request.spec, f"{prefix}spec")
        )
    else:
        found.append(FieldViolation(f"{prefix}spec", "required; the backtest to run"))
    found += [
        FieldViolation(prefix + v.field, v.description)
        for v in validation.submit_violations(request)
    ]
    violations += found
    if spec is None or found:
        return None
    return NewJob(
        spec=spec.to_dict(),
        priority=request.priority,
        max_attempts=validation.resolved_max_attempts(request.max_attempts),
        request_id=request.request_id or None,
    )


def _repeated_request_ids(
    requests: Sequence[api.SubmitBacktestRequest],
) -> list[FieldViolation]:
    first_use: dict[str, int] = {}
    violations = []
    for index, item in enumerate(requests):
        if not item.request_id:
            continue
        earlier = first_use.setdefault(item.request_id, index)
        if earlier != index:
            violations.append(
                FieldViolation(
                    f"requests[{index}].request_id",
                    f"repeats requests[{earlier}].request_id; request ids must "
                    "differ within one call",
                )
            )
    return violations
