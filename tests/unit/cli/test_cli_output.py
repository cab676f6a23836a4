"""How the command line reads: errors, tables and the demo batch."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from backcast.cli import views
from backcast.cli.client import describe_rpc_error, exit_code_for
from backcast.cli.demo import demo_batch, results_table
from backcast.cli.tables import render_table
from backcast.cli.views import interval_label, short_strategy_label, state_name
from backcast.engine.spec import Interval, resolve_params, validate_spec
from backcast.rpc.translate import spec_to_proto
from backcast.v1 import backtest_service_pb2 as api
from backcast.v1 import result_pb2, spec_pb2


class FailedCall(grpc.RpcError):
    """What a failed call exposes: code, details and trailing metadata."""

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str,
        violations: list[tuple[str, str]] | None = None,
    ) -> None:
        self._code = code
        self._details = details
        self._trailers: tuple[tuple[str, str | bytes], ...] = ()
        if violations:
            bad_request = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                    for f, d in violations
                ]
            )
            detail = any_pb2.Any()
            detail.Pack(bad_request)
            status = status_pb2.Status(
                code=code.value[0], message=details, details=[detail]
            )
            self._trailers = (("grpc-status-details-bin", status.SerializeToString()),)

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return self._trailers


def test_error_line_lists_every_bad_field_once() -> None:
    error = FailedCall(
        grpc.StatusCode.INVALID_ARGUMENT,
        "spec.costs.commission: 0.5 is outside [0, 0.1) (and 1 more field errors)",
        [
            ("spec.costs.commission", "0.5 is outside [0, 0.1)"),
            ("spec.end_time", "end_time is not after start_time"),
        ],
    )

    line = describe_rpc_error(error)

    assert "\n" not in line
    assert line.startswith("INVALID_ARGUMENT: spec.costs.commission")
    assert line.count("spec.costs.commission") == 1
    assert "spec.end_time: end_time is not after start_time" in line
    assert code_pb2.INVALID_ARGUMENT == grpc.StatusCode.INVALID_ARGUMENT.value[0]


def test_exit_codes_separate_bad_requests_from_outages() -> None:
    def code_of(status: grpc.StatusCode) -> int:
        return exit_code_for(FailedCall(status, "x"))

    assert code_of(grpc.StatusCode.INVALID_ARGUMENT) == 2
    assert code_of(grpc.StatusCode.NOT_FOUND) == 2
    assert code_of(grpc.StatusCode.FAILED_PRECONDITION) == 2
    assert code_of(grpc.StatusCode.UNAVAILABLE) == 3
    assert code_of(grpc.StatusCode.INTERNAL) == 1


def test_table_aligns_numbers_right_and_text_left() -> None:
    table = render_table(
        ["id", "name", "return"],
        [["1", "alpha", "3.21%"], ["10", "b", "-12.00%"]],
    )

    assert table.splitlines() == [
        "id  name    return",
        "--  -----  -------",
        " 1  alpha    3.21%",
        "10  b      -12.00%",
    ]


def test_labels_use_the_short_names_of_states_intervals_and_strategies() -> None:
    spec = spec_pb2.BacktestSpec(interval=spec_pb2.CANDLE_INTERVAL_FOUR_HOURS)
    spec.strategy.moving_average_crossover.fast_period = 12
    spec.strategy.moving_average_crossover.slow_period = 26

    assert state_name(api.Backtest.STATE_CANCELLING) == "cancelling"
    assert interval_label(spec.interval) == "4h"
    assert short_strategy_label(spec) == "ma simple 12/26"


def test_demo_batch_is_a_dozen_valid_and_varied_backtests() -> None:
    batch = demo_batch()

    assert len(batch) == 12
    for entry in batch:
        name = entry.spec.strategy.name
        _, problems = resolve_params(name, entry.spec.strategy.params, "strategy")
        assert not problems
        assert not validate_spec(entry.spec)
        assert entry.spec.instrument.startswith("SYN-")
        assert entry.spec.n_candles <= 21_000
    intervals = {entry.spec.interval for entry in batch}
    assert {Interval.ONE_MINUTE, Interval.FIVE_MINUTES, Interval.ONE_HOUR} <= intervals
    kinds = {entry.spec.strategy.params.get("kind") for entry in batch}
    assert {"simple", "exponential", None} <= kinds
    assert any(entry.spec.costs.commission > 0 for entry in batch)


def test_results_table_shows_metrics_of_succeeded_backtests_only() -> None:
    spec = spec_to_proto(demo_batch()[0].spec)
    done = api.Backtest(
        id=2,
        spec=spec,
        state=api.Backtest.STATE_SUCCEEDED,
        summary=result_pb2.Metrics(
            total_return=0.1234, sharpe_ratio=1.5, max_drawdown=0.05, n_trades=7
        ),
    )
    failed = api.Backtest(id=1, spec=spec, state=api.Backtest.STATE_FAILED)

    lines = results_table([done, failed]).splitlines()

    assert lines[0].split() == [
        "id",
        "strategy",
        "instrument",
        "interval",
        "total",
        "return",
        "sharpe",
        "max",
        "drawdown",
        "trades",
        "state",
    ]
    assert lines[2].split()[0] == "1" and lines[2].split()[-1] == "failed"
    assert "12.34%" in lines[3] and "1.50" in lines[3] and "5.00%" in lines[3]


def test_attempts_table_lists_each_attempt_with_its_worker_and_outcome() -> None:
    first = api.Attempt(
        number=1,
        worker="worker-1",
        outcome=api.Attempt.OUTCOME_EXPIRED,
        error_message="the lease expired: the worker stopped renewing it",
    )
    first.start_time.FromSeconds(1_700_000_000)
    first.end_time.FromSeconds(1_700_000_012)
    second = api.Attempt(
        number=2, worker="worker-2", outcome=api.Attempt.OUTCOME_RUNNING
    )
    second.start_time.FromSeconds(1_700_000_013)

    lines = views.attempts_table([first, second]).splitlines()

    assert lines[0].split() == [
        "attempt",
        "worker",
        "outcome",
        "started",
        "(UTC)",
        "ended",
        "(UTC)",
        "error",
    ]
    assert lines[2].split()[:3] == ["1", "worker-1", "expired"]
    assert lines[2].endswith("the lease expired: the worker stopped renewing it")
    assert lines[3].split()[:3] == ["2", "worker-2", "running"]
