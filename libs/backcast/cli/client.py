"""A client of the gateway's BacktestService, and how its errors read.

Every unary call has a deadline and is retried on UNAVAILABLE by the channel's
service config. That is safe for SubmitBacktest only because every submission
carries a request id, which makes a repeated submission return the first job.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType

import grpc
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from backcast.config import read_str
from backcast.rpc.server import CLIENT_OPTIONS
from backcast.v1 import backtest_service_pb2 as api
from backcast.v1 import backtest_service_pb2_grpc as api_grpc
from backcast.v1 import result_pb2, spec_pb2

DEFAULT_GATEWAY = "127.0.0.1:50051"
OWNER_HEADER = "x-backcast-owner"
DEFAULT_TIMEOUT_SECONDS = 10.0
# The gateway's limit on one ImportCandles message's piece of the file.
CSV_CHUNK_BYTES = 1 << 20

SERVICE_NAME = "backcast.v1.BacktestService"
_UNARY_METHODS = (
    "SubmitBacktest",
    "GetStatus",
    "GetResult",
    "ListBacktests",
    "CancelBacktest",
    "ListStrategies",
    "ListInstruments",
)

# gRFC A6 retry policy. WatchBacktest is left out: a stream that already sent
# messages is never retried by the channel, so `watch` reconnects itself.
SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [
                    {"service": SERVICE_NAME, "method": m} for m in _UNARY_METHODS
                ],
                "retryPolicy": {
                    "maxAttempts": 5,
                    "initialBackoff": "0.2s",
                    "maxBackoff": "3s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)

# Exit codes of the command-line client for failed calls.
EXIT_FAILED = 1
EXIT_BAD_REQUEST = 2
EXIT_UNAVAILABLE = 3

_BAD_REQUEST_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
)


@dataclass(frozen=True)
class ClientSettings:
    """Defaults of the command-line client, read once from the environment."""

    # BACKCAST_GATEWAY: host:port of the gateway; 127.0.0.1:50051.
    gateway: str
    # BACKCAST_OWNER: sent as the x-backcast-owner header; none by default,
    # which the gateway takes as "anonymous".
    owner: str | None
    # Whether BACKCAST_GATEWAY is set: `backcast data` then goes through the
    # gateway unless given a database URL; False by default.
    gateway_from_env: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ClientSettings:
        return cls(
            gateway=read_str(env, "BACKCAST_GATEWAY", DEFAULT_GATEWAY),
            owner=read_str(env, "BACKCAST_OWNER", "") or None,
            gateway_from_env=bool(read_str(env, "BACKCAST_GATEWAY", "")),
        )


def new_request_id() -> str:
    return str(uuid.uuid4())


def open_channel(address: str) -> grpc.Channel:
    """An insecure channel with keepalive, large messages and retries."""
    options = [
        *CLIENT_OPTIONS,
        ("grpc.enable_retries", 1),
        ("grpc.service_config", SERVICE_CONFIG),
    ]
    return grpc.insecure_channel(address, options=options)


class GatewayClient:
    """BacktestService calls acting for one owner, each with a deadline."""

    def __init__(
        self,
        address: str = DEFAULT_GATEWAY,
        *,
        owner: str | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self.address = address
        self.owner = owner
        self.timeout_seconds = timeout_seconds
        self._channel = open_channel(address)
        self._stub = api_grpc.BacktestServiceStub(self._channel)

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    @property
    def _metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return ((OWNER_HEADER, self.owner),) if self.owner else ()

    def submit(
        self,
        spec: spec_pb2.BacktestSpec,
        *,
        priority: int = 0,
        max_attempts: int = 0,
        request_id: str | None = None,
    ) -> api.Backtest:
        """Submit `spec`; a request id is made up when none is given."""
        request = api.SubmitBacktestRequest(
            spec=spec,
            priority=priority,
            max_attempts=max_attempts,
            request_id=request_id or new_request_id(),
        )
        response = self._stub.SubmitBacktest(
            request, timeout=self.timeout_seconds, metadata=self._metadata
        )
        return response.backtest

    def get_status(self, backtest_id: int) -> api.Backtest:
        return self.status(backtest_id).backtest

    def status(self, backtest_id: int) -> api.GetStatusResponse:
        """The backtest and every attempt of it so far."""
        request = api.GetStatusRequest(backtest_id=backtest_id)
        response: api.GetStatusResponse = self._stub.GetStatus(
            request, timeout=self.timeout_seconds, metadata=self._metadata
        )
        return response

    def get_result(
        self, backtest_id: int, *, page_size: int = 0, page_token: str = ""
    ) -> api.GetResultResponse:
        request = api.GetResultRequest(
            backtest_id=backtest_id, page_size=page_size, page_token=page_token
        )
        return self._stub.GetResult(
            request, timeout=self.timeout_seconds, metadata=self._metadata
        )

    def equity_curve(self, backtest_id: int) -> Iterator[result_pb2.EquityPoint]:
        """Every point of the backtest's full equity curve, oldest first.

        The deadline covers the whole stream; a curve of millions of points
        takes a few seconds.
        """
        request = api.GetEquityCurveRequest(backtest_id=backtest_id)
        responses = self._stub.GetEquityCurve(
            request, timeout=self.timeout_seconds, metadata=self._metadata
        )
        for response in responses:
            yield from response.points

    def list_backtests(
        self,
        *,
        states: Sequence[api.Backtest.State.ValueType] = (),
        page_size: int = 0,
        page_token: str = "",
    ) -> api.ListBacktestsResponse:
        request = api.ListBacktestsRequest(
            states=states, page_size=page_size, page_token=page_token
        )
        return self._stub.ListBacktests(
            request, timeout=self.timeout_seconds, metadata=self._metadata
        )

    def cancel(self, backtest_id: int) -> api.Backtest:
        request = api.CancelBacktestRequest(backtest_id=backtest_id)
        response = self._stub.CancelBacktest(
            request, timeout=self.timeout_seconds, metadata=self._metadata
        )
        return response.backtest

    def list_strategies(self) -> api.ListStrategiesResponse:
        return self._stub.ListStrategies(
            api.ListStrategiesRequest(),
            timeout=self.timeout_seconds,
            metadata=self._metadata,
        )

    def import_candles(
        self,
        instrument: str,
        interval: spec_pb2.CandleInterval.ValueType,
        chunks: Iterable[bytes],
    ) -> api.ImportCandlesResponse:
        """Upload a CSV file, given as pieces of at most 1 MiB, in one stream.

        Not retried: the pieces are read as they are sent, so they cannot be
        sent again.
        """
        requests = (
            api.ImportCandlesRequest(
                instrument=instrument if i == 0 else "",
                interval=interval if i == 0 else spec_pb2.CANDLE_INTERVAL_UNSPECIFIED,
                csv_chunk=chunk,
            )
            for i, chunk in enumerate(chunks)
        )
        return self._stub.ImportCandles(
            requests, timeout=self.timeout_seconds, metadata=self._metadata
        )

    def list_instruments(self) -> api.ListInstrumentsResponse:
        return self._stub.ListInstruments(
            api.ListInstrumentsRequest(),
            timeout=self.timeout_seconds,
            metadata=self._metadata,
        )

    def watch(self, backtest_id: int) -> Iterator[api.Backtest]:
        """The backtest now and at every change, until a terminal state.

        The stream has no deadline: a backtest may run for a long time.
        """
        request = api.WatchBacktestRequest(backtest_id=backtest_id)
        for response in self._stub.WatchBacktest(request, metadata=self._metadata):
            yield response.backtest


def check_health(
    address: str, *, service: str = "", timeout_seconds: float = 5.0
) -> health_pb2.HealthCheckResponse.ServingStatus.ValueType:
    """The grpc.health.v1 status of `service` at `address`.

    Raises:
        grpc.RpcError: when the server cannot be reached in time.
    """
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service=service)
        response = stub.Check(request, timeout=timeout_seconds)
        return response.status


def describe_rpc_error(error: grpc.RpcError) -> str:
    """One line: the status code, then every bad field or else the message."""
    code = _code_of(error)
    name = code.name if code is not None else "UNKNOWN"
    # The bad fields say everything the message says, and more when there
    # are several; list them all on the one line.
    violations = [f"{v.field}: {v.description}" for v in _field_violations(error)]
    if violations:
        return f"{name}: {'; '.join(violations)}"
    return f"{name}: {_details_of(error) or 'no message'}"


def exit_code_for(error: grpc.RpcError) -> int:
    code = _code_of(error)
    if code in _BAD_REQUEST_CODES:
        return EXIT_BAD_REQUEST
    if code is grpc.StatusCode.UNAVAILABLE:
        return EXIT_UNAVAILABLE
    return EXIT_FAILED


def _code_of(error: grpc.RpcError) -> grpc.StatusCode | None:
    code = getattr(error, "code", None)
    return code() if callable(code) else None


def _details_of(error: grpc.RpcError) -> str:
    details = getattr(error, "details", None)
    text = details() if callable(details) else None
    return " ".join(str(text or "").split())


def _field_violations(
    error: grpc.RpcError,
) -> list[error_details_pb2.BadRequest.FieldViolation]:
    if not callable(getattr(error, "trailing_metadata", None)):
        return []
    try:
        status = rpc_status.from_call(error)
    except ValueError:
        # The trailer disagreed with the call's own code or message; the
        # plain message still says what went wrong.
        return []
    if status is None:
        return []

    violations: list[error_details_pb2.BadRequest.FieldViolation] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations.extend(bad_request.field_violations)
    return violations
