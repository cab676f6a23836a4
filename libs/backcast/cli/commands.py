"""What each `backcast` command does, once its flags are parsed."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from types import FrameType
from typing import BinaryIO

import grpc
import psycopg
from google.protobuf import json_format
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2

from backcast.cli import views
from backcast.cli.client import (
    CSV_CHUNK_BYTES,
    DEFAULT_GATEWAY,
    EXIT_FAILED,
    EXIT_UNAVAILABLE,
    GatewayClient,
    check_health,
    describe_rpc_error,
    exit_code_for,
    new_request_id,
)
from backcast.cli.demo import run_demo
from backcast.cli.platform import Platform, PlatformError, PlatformOptions
from backcast.config import (
    database_url,
    marketdata_url,
    redact_url,
    require_database_url,
)
from backcast.engine.spec import (
    INSTRUMENT_PATTERN,
    SYNTHETIC_PREFIX,
    BacktestSpec,
    Costs,
    Execution,
    Interval,
    StrategySpec,
    resolve_params,
)
from backcast.errors import DatabaseUnavailable, InvalidArgument
from backcast.rpc.translate import (
    interval_from_proto,
    interval_to_proto,
    spec_to_proto,
)
from backcast.v1 import backtest_service_pb2 as api
from backcast.v1 import spec_pb2

EXIT_INTERRUPTED = 130
_WATCH_RECONNECTS = 5


def complain(message: str) -> None:
    print(f"backcast: {message}", file=sys.stderr, flush=True)


def _platform_options(args: argparse.Namespace) -> PlatformOptions:
    return PlatformOptions(
        n_workers=args.workers,
        slots_per_worker=args.slots,
        gateway_port=args.gateway_port,
        scheduler_port=args.scheduler_port,
        data_dir=args.data_dir,
        verbose=args.verbose,
        database_url=database_url(),
        log_level=args.log_level,
    )


def cmd_up(args: argparse.Namespace) -> int:
    platform = Platform(_platform_options(args))
    with _sigterm_interrupts():
        try:
            _start_platform(platform)
            print("backcast is up; press Ctrl-C to stop", flush=True)
            print(_try_hint(platform.gateway_address), flush=True)
            return _supervise(platform)
        except KeyboardInterrupt:
            print("stopping", flush=True)
            return 0
        except PlatformError as error:
            complain(str(error))
            return EXIT_FAILED
        finally:
            _stop_platform(platform)


def _start_platform(platform: Platform) -> None:
    if platform.options.database_url:
        where = redact_url(platform.options.database_url)
    else:
        where = f"embedded PostgreSQL in {platform.pgdata}"
    print(f"starting backcast on {where}", flush=True)
    platform.start()
    for line in platform.describe():
        print(f"  {line}", flush=True)


def _stop_platform(platform: Platform) -> None:
    # A second Ctrl-C must not cut the shutdown short and leave processes.
    with _signals_ignored():
        platform.stop()
    print("stopped", flush=True)


def _supervise(platform: Platform) -> int:
    while True:
        ended = platform.first_exited()
        if ended is not None:
            code = ended.returncode()
            complain(platform.explain(ended, f"exited with code {code}"))
            return EXIT_FAILED
        time.sleep(0.5)


def _try_hint(gateway: str) -> str:
    target = "" if gateway == DEFAULT_GATEWAY else f" --gateway {gateway}"
    return (
        f"try: backcast submit{target} --strategy moving_average_crossover "
        "--param fast_period=10 --param slow_period=30 --instrument SYN-BTCUSD "
        "--interval 1h --start 2024-01-01 --end 2024-03-01"
    )


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (and SIGHUP, a closed terminal) stop the platform like Ctrl-C."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    stoppers = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in stoppers}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def cmd_demo(args: argparse.Namespace) -> int:
    if args.gateway:
        return _run_demo_against(args.gateway, args)

    platform = Platform(_platform_options(args))
    with _sigterm_interrupts():
        try:
            _start_platform(platform)
            return _run_demo_against(platform.gateway_address, args)
        except KeyboardInterrupt:
            complain("interrupted; stopping")
            return EXIT_INTERRUPTED
        except PlatformError as error:
            complain(str(error))
            return EXIT_FAILED
        except grpc.RpcError as error:
            complain(describe_rpc_error(error))
            return exit_code_for(error)
        finally:
            _stop_platform(platform)


def _run_demo_against(gateway: str, args: argparse.Namespace) -> int:
    with GatewayClient(
        gateway, owner=args.owner, timeout_seconds=args.timeout
    ) as client:
        return run_demo(client, timeout_seconds=args.wait)


def cmd_migrate(args: argparse.Namespace) -> int:
    from backcast.db import migrate

    url = args.database_url or require_database_url()
    migrate(url)
    print(f"migrated {redact_url(url)}")
    return 0


def parse_time(text: str) -> datetime:
    """An ISO date or date-time as UTC; naive values are taken as UTC."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'"{text}" is not an ISO date or time, e.g. 2024-01-01 or '
            "2024-01-01T09:30:00Z"
        ) from None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_params(pairs: Sequence[str]) -> dict[str, int | float | str]:
    """`["fast_period=10", "kind=exponential"]` as typed values.

    Raises:
        InvalidArgument: naming the `--param` that has no `=`.
    """
    params: dict[str, int | float | str] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name.strip():
            raise InvalidArgument.of("--param", f'"{pair}" is not NAME=VALUE')
        params[name.strip()] = _typed_value(text.strip())
    return params


def _typed_value(text: str) -> int | float | str:
    for convert in (int, float):
        with contextlib.suppress(ValueError):
            return convert(text)
    return text


def build_spec(args: argparse.Namespace) -> spec_pb2.BacktestSpec:
    """The spec proto of the submit flags.

    Strategy parameters are checked here because the proto has no place for
    an unknown one; everything else is left to the gateway's validation.
    """
    path = f"spec.strategy.{args.strategy}"
    params, problems = resolve_params(args.strategy, parse_params(args.param), path)
    if problems:
        raise InvalidArgument(problems)
    spec = BacktestSpec(
        strategy=StrategySpec(args.strategy, params),
        instrument=args.instrument,
        interval=Interval(args.interval),
        start_at=args.start,
        end_at=args.end,
        costs=Costs(commission=args.commission, slippage_bps=args.slippage_bps),
        initial_cash=args.initial_cash,
        execution=Execution(
            fill=args.fill,
            units=args.units,
            position_fraction=args.position_fraction,
            direction=args.direction,
            stop_loss=args.stop_loss,
            take_profit=args.take_profit,
        ),
    )
    return spec_to_proto(spec)


def cmd_submit(args: argparse.Namespace) -> int:
    spec = build_spec(args)
    with _client(args) as client:
        backtest = client.submit(
            spec,
            priority=args.priority,
            max_attempts=args.max_attempts,
            request_id=args.request_id or new_request_id(),
        )
    if args.json:
        _print_json(api.SubmitBacktestResponse(backtest=backtest))
    else:
        print(f"backtest {backtest.id} {views.state_name(backtest.state)}")
    return 0


def cmd_strategies(args: argparse.Namespace) -> int:
    from backcast.cli.tables import render_table

    with _client(args) as client:
        response = client.list_strategies()
    if args.json:
        _print_json(response)
        return 0
    for i, strategy in enumerate(response.strategies):
        if i:
            print()
        short = "long and short" if strategy.supports_short else "long only"
        print(f"{strategy.name}: {strategy.description} ({short})")
        if strategy.parameters:
            rows = [_parameter_row(p) for p in strategy.parameters]
            headers = ["parameter", "default", "allowed", "meaning"]
            print(render_table(headers, rows))
    return 0


def _parameter_row(param: api.ParameterDescription) -> list[str]:
    if param.kind == api.ParameterDescription.KIND_CHOICE:
        return [
            param.name,
            param.default_choice,
            ", ".join(param.choices),
            param.description,
        ]
    return [
        param.name,
        f"{param.default_number:g}",
        parameter_range_text(param.minimum, param.maximum),
        param.description,
    ]


def parameter_range_text(minimum: float, maximum: float) -> str:
    """Listed bounds as an interval, "[2, 1000]" or "(0, 50)"."""
    # The wire carries inclusive bounds; an open bound arrives as the double
    # next to it (0 < x reads 5e-324), shown here as "(0".
    low, high = round(minimum, 9), round(maximum, 9)
    opening = "[" if low == minimum else "("
    closing = "]" if high == maximum else ")"
    return f"{opening}{low:g}, {high:g}{closing}"


def _client(args: argparse.Namespace) -> GatewayClient:
    return GatewayClient(args.gateway, owner=args.owner, timeout_seconds=args.timeout)


def _print_json(message: Message) -> None:
    print(json_format.MessageToJson(message, indent=2))


def cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        status = client.status(args.id)
    if args.json:
        _print_json(status)
    else:
        print(views.backtest_details(status.backtest))
        if status.attempts:
            print()
            print(views.attempts_table(list(status.attempts)))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        backtest = client.cancel(args.id)
    if args.json:
        _print_json(api.CancelBacktestResponse(backtest=backtest))
    else:
        print(f"backtest {backtest.id} {views.state_name(backtest.state)}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    states = [views.state_code(name) for name in args.state]
    backtests: list[api.Backtest] = []
    token = args.page_token
    with _client(args) as client:
        while True:
            page = client.list_backtests(
                states=states, page_size=args.page_size, page_token=token
            )
            backtests.extend(page.backtests)
            token = page.next_page_token
            if not token or not args.all:
                break

    if args.json:
        _print_json(
            api.ListBacktestsResponse(backtests=backtests, next_page_token=token)
        )
        return 0
    if not backtests:
        print("no backtests")
    else:
        print(views.backtests_table(backtests))
    if token:
        print(f"more: backcast list --page-token {token} (or --all)")
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    failures = 0
    last_line = ""
    with _client(args) as client:
        while True:
            try:
                for backtest in client.watch(args.id):
                    failures = 0
                    line = views.backtest_line(backtest)
                    if line != last_line:
                        now = datetime.now(UTC).strftime("%H:%M:%S")
                        print(f"{now}  {line}", flush=True)
                        last_line = line
                    if views.is_terminal(backtest):
                        succeeded = backtest.state == api.Backtest.STATE_SUCCEEDED
                        return 0 if succeeded else EXIT_FAILED
            except grpc.RpcError as error:
                if exit_code_for(error) != EXIT_UNAVAILABLE:
                    raise
                if failures >= _WATCH_RECONNECTS:
                    raise
            else:
                if failures >= _WATCH_RECONNECTS:
                    complain("the watch kept ending before the backtest finished")
                    return EXIT_UNAVAILABLE
            # The stream ended early (the gateway restarted or went away):
            # watch again after a short pause.
            failures += 1
            time.sleep(min(0.5 * 2**failures, 5.0))


def cmd_result(args: argparse.Namespace) -> int:
    if args.equity_full:
        return _write_full_equity(args, args.equity_full)
    n_trades = max(0, args.trades)
    with _client(args) as client:
        response = client.get_result(args.id, page_size=max(1, n_trades))
    if n_trades == 0:
        del response.result.trades[:]
    if args.json:
        _print_json(response)
        return 0

    result = response.result
    print(f"backtest {response.backtest_id}")
    print(views.metrics_table(result.metrics))
    print()
    shown = list(result.trades[:n_trades])
    print(f"trades: {len(shown)} of {response.total_trades} shown")
    if shown:
        print(views.trades_table(shown))
    print()
    print(views.equity_text(list(result.equity_curve)))
    return 0


def _write_full_equity(args: argparse.Namespace, path: str) -> int:
    # Written as the points arrive: a curve of millions of points is never
    # held whole, and a failure before the first point leaves no file.
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(_client(args))
        points = client.equity_curve(args.id)
        first = next(points, None)
        out = sys.stdout if path == "-" else stack.enter_context(open(path, "w"))
        out.write("time,equity\n")
        n_points = 0
        for point in itertools.chain([] if first is None else [first], points):
            at = datetime.fromtimestamp(point.time.seconds, UTC)
            out.write(f"{at:%Y-%m-%dT%H:%M:%SZ},{point.equity!r}\n")
            n_points += 1
    if path != "-":
        print(f"wrote {n_points} equity points to {path}", file=sys.stderr)
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    status = check_health(
        args.address, service=args.service, timeout_seconds=args.timeout
    )
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
    print(f"{args.address} {name}")
    return 0 if status == health_pb2.HealthCheckResponse.SERVING else EXIT_FAILED


def cmd_data_import(args: argparse.Namespace) -> int:
    from backcast.marketdata.csv_import import import_candle_file

    symbol = args.symbol.strip()
    if not INSTRUMENT_PATTERN.match(symbol) or symbol.startswith(SYNTHETIC_PREFIX):
        raise InvalidArgument.of(
            "--symbol",
            f'"{symbol[:40]}" is not a symbol to import: 1 to 32 characters of '
            "A-Z, 0-9, '.', '-', '_' or '/', not starting with SYN- (synthetic)",
        )
    gateway = data_gateway(args)
    if gateway is not None:
        return _import_through_gateway(args, gateway, symbol)
    started = time.perf_counter()
    with _marketdata_connection(args) as conn:
        try:
            candles = import_candle_file(
                conn, args.file, symbol, Interval(args.interval)
            )
        except (OSError, UnicodeDecodeError) as error:
            raise PlatformError(f"cannot read {args.file}: {error}") from None
    seconds = time.perf_counter() - started

    first, last = (datetime.fromtimestamp(int(t), UTC) for t in candles.times[[0, -1]])
    print(
        f"imported {len(candles)} {args.interval} candles of {symbol} from "
        f"{_utc_text(first)} to {_utc_text(last)} in {seconds:.2f} s"
    )
    return 0


def data_gateway(args: argparse.Namespace) -> str | None:
    """The gateway `backcast data` goes through, or None for the database."""
    if args.gateway:
        return str(args.gateway)
    if args.database_url:
        return None
    env_gateway: str | None = args.env_gateway
    return env_gateway


def _import_through_gateway(args: argparse.Namespace, gateway: str, symbol: str) -> int:
    started = time.perf_counter()
    interval = interval_to_proto(Interval(args.interval))
    try:
        file = args.file.open("rb")
    except OSError as error:
        raise PlatformError(f"cannot read {args.file}: {error}") from None
    with file, _data_client(args, gateway) as client:
        response = client.import_candles(symbol, interval, _file_chunks(file))
    seconds = time.perf_counter() - started

    stored = response.coverage
    first, last = (
        _utc_text(t.ToDatetime(tzinfo=UTC))
        for t in (stored.first_time, stored.last_time)
    )
    print(
        f"imported {response.n_imported} {args.interval} candles of {symbol} "
        f"through {gateway} in {seconds:.2f} s; stored now: {first} to {last}, "
        f"{stored.n_candles} candles"
    )
    return 0


def _file_chunks(file: BinaryIO) -> Iterator[bytes]:
    # Always one message at least, so that an empty file reaches the gateway
    # and is refused there with the reason.
    chunk = file.read(CSV_CHUNK_BYTES)
    yield chunk
    while chunk := file.read(CSV_CHUNK_BYTES):
        yield chunk


def _data_client(args: argparse.Namespace, gateway: str) -> GatewayClient:
    return GatewayClient(gateway, owner=args.owner, timeout_seconds=args.timeout)


def cmd_data_list(args: argparse.Namespace) -> int:
    from backcast.cli.tables import render_table

    gateway = data_gateway(args)
    if gateway is None:
        rows = _stored_series_rows(args)
    else:
        with _data_client(args, gateway) as client:
            listed = client.list_instruments().instruments
        rows = [_coverage_row(c) for c in listed]
    if not rows:
        print("no stored candles; import some with `backcast data import`")
        return 0
    print(render_table(["symbol", "interval", "first", "last", "candles"], rows))
    return 0


def _stored_series_rows(args: argparse.Namespace) -> list[list[str]]:
    from backcast.marketdata.storage import list_instruments

    with _marketdata_connection(args) as conn:
        coverage = list_instruments(conn)
    return [
        [
            c.instrument,
            c.interval.value,
            _utc_text(c.first_at),
            _utc_text(c.last_at),
            str(c.n_candles),
        ]
        for c in coverage
    ]


def _coverage_row(coverage: api.InstrumentCoverage) -> list[str]:
    try:
        interval = interval_from_proto(coverage.interval, "interval").value
    except InvalidArgument:
        # A newer gateway may know intervals this client does not.
        interval = str(coverage.interval)
    return [
        coverage.instrument,
        interval,
        _utc_text(coverage.first_time.ToDatetime(tzinfo=UTC)),
        _utc_text(coverage.last_time.ToDatetime(tzinfo=UTC)),
        str(coverage.n_candles),
    ]


@contextlib.contextmanager
def _marketdata_connection(
    args: argparse.Namespace,
) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    url = args.database_url or marketdata_url() or require_database_url()
    try:
        with psycopg.connect(url) as conn:
            yield conn
    except psycopg.errors.UndefinedTable:
        raise PlatformError(
            f"{redact_url(url)} has no candle tables; run `backcast migrate`"
        ) from None
    except (psycopg.OperationalError, DatabaseUnavailable):
        raise PlatformError(f"cannot reach {redact_url(url)}") from None


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
