"""The `backcast` command line: subcommands, their flags and their help."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

import grpc

from backcast.cli import views
from backcast.cli.client import (
    EXIT_BAD_REQUEST,
    EXIT_FAILED,
    ClientSettings,
    describe_rpc_error,
    exit_code_for,
)
from backcast.cli.commands import (
    EXIT_INTERRUPTED,
    cmd_cancel,
    cmd_data_import,
    cmd_data_list,
    cmd_demo,
    cmd_health,
    cmd_list,
    cmd_migrate,
    cmd_result,
    cmd_status,
    cmd_strategies,
    cmd_submit,
    cmd_up,
    cmd_watch,
    complain,
    parse_time,
)
from backcast.cli.local import cmd_run
from backcast.cli.platform import (
    DEFAULT_DATA_DIR,
    DEFAULT_GATEWAY_PORT,
    DEFAULT_SCHEDULER_PORT,
    PlatformError,
    default_slots,
)
from backcast.config import ConfigError
from backcast.engine.spec import DIRECTIONS, FILLS, STRATEGIES, UNITS, Interval
from backcast.errors import InvalidArgument

Handler = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    settings = ClientSettings.from_env(os.environ)
    parser = build_parser(settings)
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except grpc.RpcError as error:
        complain(describe_rpc_error(error))
        return exit_code_for(error)
    except InvalidArgument as error:
        complain(_invalid_argument_text(error))
        return EXIT_BAD_REQUEST
    except ConfigError as error:
        complain(str(error))
        return EXIT_BAD_REQUEST
    except PlatformError as error:
        complain(str(error))
        return EXIT_FAILED
    except KeyboardInterrupt:
        complain("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`backcast list | head`); say nothing more,
        # and keep the interpreter from complaining while it flushes stdout.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED


def _invalid_argument_text(error: InvalidArgument) -> str:
    fields = "; ".join(f"{v.field}: {v.description}" for v in error.violations)
    return f"INVALID_ARGUMENT: {fields}"


def build_parser(settings: ClientSettings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backcast",
        description=(
            "Backcast runs trading-strategy backtests as jobs on gRPC services "
            "backed by PostgreSQL. `backcast up` starts the platform on this "
            "machine; the other commands talk to its gateway."
        ),
        epilog=(
            "Environment: BACKCAST_GATEWAY (gateway address, default "
            "127.0.0.1:50051), BACKCAST_OWNER (the x-backcast-owner header), "
            "BACKCAST_DATABASE_URL (PostgreSQL for `up`, `demo` and `migrate`). "
            "Run `backcast COMMAND --help` for the options of a command."
        ),
    )
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add_up(commands)
    _add_demo(commands, settings)
    _add_migrate(commands)
    _add_submit(commands, settings)
    _add_strategies(commands, settings)
    _add_status(commands, settings)
    _add_list(commands, settings)
    _add_watch(commands, settings)
    _add_cancel(commands, settings)
    _add_result(commands, settings)
    _add_run(commands)
    _add_health(commands)
    _add_data(commands, settings)
    return parser


def _version() -> str:
    try:
        return f"backcast {metadata.version('backcast')}"
    except metadata.PackageNotFoundError:
        return "backcast (not installed)"


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    description: str,
    handler: Handler,
) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=summary, description=description)
    parser.set_defaults(handler=handler)
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port in [0, 65535]")
    return value


def _add_connection_options(
    parser: argparse.ArgumentParser, settings: ClientSettings, *, demo: bool = False
) -> None:
    group = parser.add_argument_group("connection")
    if demo:
        group.add_argument(
            "--gateway",
            metavar="ADDRESS",
            default=None,
            help="run the batch against this running gateway (host:port) and "
            "start nothing",
        )
        group.add_argument(
            "--owner",
            default=settings.owner or "demo",
            help="owner of the demo backtests (default: BACKCAST_OWNER, else demo)",
        )
    else:
        group.add_argument(
            "--gateway",
            metavar="ADDRESS",
            default=settings.gateway,
            help="host:port of the gateway (default: %(default)s, from "
            "BACKCAST_GATEWAY)",
        )
        group.add_argument(
            "--owner",
            default=settings.owner,
            help="owner sent as the x-backcast-owner header (default: "
            "BACKCAST_OWNER, else the gateway's 'anonymous')",
        )
    group.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="deadline of each call, retries included (default: %(default)s)",
    )


def _add_platform_options(parser: argparse.ArgumentParser, default_port: bool) -> None:
    group = parser.add_argument_group("platform")
    group.add_argument(
        "--workers",
        type=_positive_int,
        default=2,
        help="compute worker processes (default: %(default)s)",
    )
    group.add_argument(
        "--slots",
        type=_positive_int,
        default=default_slots(),
        help="backtests each worker runs at once (default: cores minus one, "
        "here %(default)s)",
    )
    gateway_port = DEFAULT_GATEWAY_PORT if default_port else 0
    scheduler_port = DEFAULT_SCHEDULER_PORT if default_port else 0
    group.add_argument(
        "--gateway-port",
        type=_port,
        default=gateway_port,
        help="gateway port on 127.0.0.1; 0 picks a free one (default: %(default)s)",
    )
    group.add_argument(
        "--scheduler-port",
        type=_port,
        default=scheduler_port,
        help="scheduler port on 127.0.0.1; 0 picks a free one (default: %(default)s)",
    )
    group.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="directory for the embedded PostgreSQL (DATA_DIR/pgdata) and the "
        "service logs (DATA_DIR/logs) (default: %(default)s)",
    )
    group.add_argument(
        "--verbose",
        action="store_true",
        help="show the service logs on this terminal instead of writing files",
    )
    group.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level of the services (default: %(default)s)",
    )


def _add_up(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = _command(
        commands,
        "up",
        "run the whole platform on this machine until Ctrl-C",
        "Start PostgreSQL (embedded, unless BACKCAST_DATABASE_URL or DATABASE_URL "
        "names a server), apply migrations, then the gateway, the scheduler and "
        "the compute workers as separate processes. Runs until Ctrl-C or SIGTERM, "
        "then stops everything it started.",
        cmd_up,
    )
    _add_platform_options(parser, default_port=True)


def _add_demo(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    settings: ClientSettings,
) -> None:
    parser = _command(
        commands,
        "demo",
        "start the platform, run a batch of demo backtests, print the results",
        "Start the platform like `backcast up` (on free ports unless given), "
        "submit a dozen backtests on synthetic SYN- instruments over gRPC, show "
        "their progress, print a table of results and stop everything. Exits 0 "
        "when every backtest succeeded. With --gateway, runs the batch against "
        "an already running gateway and starts nothing.",
        cmd_demo,
    )
    _add_connection_options(parser, settings, demo=True)
    parser.add_argument(
        "--wait",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="give up on backtests unfinished after this long (default: %(default)s)",
    )
    _add_platform_options(parser, default_port=False)


def _add_migrate(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = _command(
        commands,
        "migrate",
        "apply the database migrations",
        "Bring the schema of the database named by BACKCAST_DATABASE_URL (or "
        "DATABASE_URL) up to date. Safe to run again; does nothing when current.",
        cmd_migrate,
    )
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="postgresql:// URL (default: BACKCAST_DATABASE_URL or DATABASE_URL)",
    )


def _add_submit(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    settings: ClientSettings,
) -> None:
    strategies = "; ".join(
        f"{name}: {', '.join(p.name for p in info.params) or 'no parameters'}"
        for name, info in STRATEGIES.items()
    )
    parser = _command(
        commands,
        "submit",
        "submit one backtest",
        "Submit a backtest and print its id and state; it runs later on a "
        "worker (follow it with `backcast watch ID`). Every submission carries "
        "a request id (a new UUID4 unless --request-id is given), so a retried "
        "call never creates a second backtest. Strategy parameters: "
        f"{strategies}.",
        cmd_submit,
    )
    _add_connection_options(parser, settings)
    parser.add_argument(
        "--strategy",
        choices=sorted(STRATEGIES),
        default="moving_average_crossover",
        help="strategy to run (default: %(default)s)",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a strategy parameter, repeatable: --param fast_period=10 "
        "--param slow_period=30 --param kind=exponential",
    )
    parser.add_argument(
        "--instrument",
        default="SYN-BTCUSD",
        help="symbol; SYN-* are synthetic series (default: %(default)s)",
    )
    parser.add_argument(
        "--interval",
        choices=[i.value for i in Interval],
        default="1h",
        help="candle interval (default: %(default)s)",
    )
    parser.add_argument(
        "--start",
        type=parse_time,
        default=parse_time("2024-01-01"),
        help="first candle, ISO date or time, UTC unless an offset is given "
        "(default: 2024-01-01)",
    )
    parser.add_argument(
        "--end",
        type=parse_time,
        default=parse_time("2024-02-01"),
        help="end of the period, exclusive (default: 2024-02-01)",
    )
    _add_trading_options(parser)
    parser.add_argument(
        "--priority",
        type=int,
        default=0,
        help="higher runs first, in [-100, 100] (default: 0)",
    )
    parser.add_argument(
        "--max-attempts",
        type=int,
        default=0,
        help="attempts before the backtest fails, in [1, 10] (default: the "
        "gateway's, 3)",
    )
    parser.add_argument(
        "--request-id",
        help="idempotency key; repeating it returns the first backtest "
        "(default: a new UUID4)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the response as JSON"
    )


def _add_trading_options(parser: argparse.ArgumentParser) -> None:
    """Costs, starting cash and execution flags, shared by submit and run."""
    parser.add_argument(
        "--commission",
        type=float,
        default=0.0,
        help="fraction of traded notional per fill; 0.001 is 10 bps (default: 0)",
    )
    parser.add_argument(
        "--slippage-bps",
        type=float,
        default=0.0,
        help="adverse slippage per fill in basis points (default: 0)",
    )
    parser.add_argument(
        "--initial-cash",
        type=float,
        default=10_000.0,
        help="starting cash in the quote currency (default: 10000)",
    )
    _add_execution_options(parser)


def _add_execution_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("execution (see docs/engine.md)")
    group.add_argument(
        "--fill",
        choices=FILLS,
        default="next_open",
        help="orders fill at the next candle's open or the deciding candle's "
        "close (default: %(default)s)",
    )
    group.add_argument(
        "--units",
        choices=UNITS,
        default="whole",
        help="entries buy whole units, rounded down, or fractions of a unit "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--position-fraction",
        type=float,
        default=1.0,
        metavar="FRACTION",
        help="fraction of equity committed at each entry, in (0, 1] "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--direction",
        choices=DIRECTIONS,
        default="long_only",
        help="long only, or long and short where the strategy has a short rule "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--stop-loss",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="exit when price moves this fraction against the entry, in [0, 1); "
        "0.05 is 5%%, 0 is none (default: 0)",
    )
    group.add_argument(
        "--take-profit",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="exit when price moves this fraction in favour of the entry, in "
        "[0, 100]; 0 is none (default: 0)",
    )


def _add_strategies(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    settings: ClientSettings,
) -> None:
    parser = _command(
        commands,
        "strategies",
        "list the strategies the gateway runs",
        "Ask the gateway for its registered strategies and print each one with "
        "its parameters, their defaults and bounds, and whether it can go short.",
        cmd_strategies,
    )
    _add_connection_options(parser, settings)
    parser.add_argument(
        "--json", action="store_true", help="print the response as JSON"
    )


def _add_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", type=int, help="backtest id, as printed by submit")


def _add_status(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    settings: ClientSettings,
) -> None:
    parser = _command(
        commands,
        "status",
        "show one backtest",
        "Print a backtest's state, attempt, progress, spec, timestamps, error "
        "and, once it has succeeded, its headline metrics.",
        cmd_status,
    )
    _add_id(parser)
    _add_connection_options(parser, settings)
    parser.add_argument(
        "--json", action="store_true", help="print the response as JSON"
    )


def _add_cancel(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    settings: ClientSettings,
) -> None:
    parser = _command(
        commands,
        "cancel",
        "cancel a backtest",
        "A queued backtest is cancelled at once; a running one becomes "
        "cancelling until its worker has stopped it. Cancelling a finished "
        "backtest is refused (exit code 2).",
        cmd_cancel,
    )
    _add_id(parser)
    _add_connection_options(parser, settings)
    parser.add_argument(
        "--json", action="store_true", help="print the response as JSON"
    )


def _add_list(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    settings: ClientSettings,
) -> None:
    parser = _command(
        commands,
        "list",
        "list your backtests, newest first",
        "List the owner's backtests, newest first, optionally only those in "
        "some states. Shows one page unless --all is given.",
        cmd_list,
    )
    _add_connection_options(parser, settings)
    parser.add_argument(
        "--state",
        action="extend",
        nargs="+",
        default=[],
        choices=views.STATE_NAMES,
        help="only backtests in these states (repeatable)",
    )
    parser.add_argument(
        "--page-size",
        type=int,
        default=50,
        metavar="N",
        help="backtests per page, at most 500 (default: %(default)s)",
    )
    parser.add_argument(
        "--page-token", default="", help="continue from a previous page's token"
    )
    parser.add_argument("--all", action="store_true", help="follow every page")
    parser.add_argument(
        "--json", action="store_true", help="print the response as JSON"
    )


def _add_watch(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    settings: ClientSettings,
) -> None:
    parser = _command(
        commands,
        "watch",
        "follow a backtest until it finishes",
        "Stream a backtest's state and progress, one line per change, until it "
        "succeeds, fails or is cancelled; reconnects if the gateway goes away. "
        "Exits 0 when it succeeded and 1 otherwise.",
        cmd_watch,
    )
    _add_id(parser)
    _add_connection_options(parser, settings)


def _add_result(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    settings: ClientSettings,
) -> None:
    parser = _command(
        commands,
        "result",
        "show the result of a succeeded backtest",
        "Print the metrics, the first closed trades and a summary of the "
        "equity curve. A backtest that has not succeeded has no result "
        "(exit code 2).",
        cmd_result,
    )
    _add_id(parser)
    _add_connection_options(parser, settings)
    parser.add_argument(
        "--trades",
        type=int,
        default=10,
        metavar="N",
        help="closed trades to show, at most 10000; 0 shows none "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the response as JSON"
    )
    parser.add_argument(
        "--equity-full",
        metavar="PATH",
        help="instead, write the equity at every candle close as CSV (time, "
        "equity) to PATH, '-' for standard output; the candles are reloaded, "
        "so a backtest whose candles were re-imported since has none (exit "
        "code 2)",
    )


def _add_run(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = _command(
        commands,
        "run",
        "backtest a CSV file of candles in this process",
        "Read a CSV file of candles (a header row naming time, open, high, low, "
        "close and volume; times as epoch seconds or ISO-8601 UTC), check every "
        "row as `data import` does, backtest it with the engine the workers run "
        "and print the metrics. Needs no platform and no database. Bad input "
        "exits 2 with one line naming the flag or the line of the file.",
        cmd_run,
    )
    parser.add_argument(
        "--data", required=True, type=Path, metavar="FILE", help="CSV file of candles"
    )
    parser.add_argument(
        "--interval",
        choices=[i.value for i in Interval],
        default=None,
        help="candle interval of the file (default: its shortest time step)",
    )
    parser.add_argument(
        "--strategy",
        choices=sorted(STRATEGIES),
        default="moving_average_crossover",
        help="strategy to run (default: %(default)s)",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a strategy parameter, repeatable: --param fast_period=10 "
        "--param slow_period=30 (see `backcast submit --help`)",
    )
    _add_trading_options(parser)
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the metrics as a JSON object, named as in backcast.v1.Metrics",
    )


def _add_health(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = _command(
        commands,
        "health",
        "check a service with the gRPC health protocol",
        "Call grpc.health.v1.Health/Check on ADDRESS and print the status. Exits "
        "0 when SERVING, 1 otherwise, 3 when nothing answers. Container "
        "healthchecks use it.",
        cmd_health,
    )
    parser.add_argument("address", metavar="ADDRESS", help="host:port of any service")
    parser.add_argument(
        "--service",
        default="",
        help="service name to check, e.g. backcast.v1.BacktestService "
        "(default: the whole server)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="deadline of the check (default: %(default)s)",
    )


def _add_data(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    settings: ClientSettings,
) -> None:
    data = commands.add_parser(
        "data",
        help="import and list stored candles",
        description="Candles stored in PostgreSQL (BACKCAST_MARKETDATA_URL, else "
        "BACKCAST_DATABASE_URL or DATABASE_URL) for backtests on real "
        "instruments. Run `backcast migrate` first. With --gateway (or "
        "BACKCAST_GATEWAY set and no --database-url), the commands go through "
        "the gateway instead of the database.",
    )
    actions = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    importer = _command(
        actions,
        "import",
        "import candles from a CSV file",
        "Read a CSV file with a header row naming time, open, high, low, close "
        "and volume (time as epoch seconds or ISO-8601 UTC), check every row, "
        "and store the candles in one transaction. Stored candles of the same "
        "symbol and interval from the file's first to its last time are "
        "replaced; a bad row is reported by line number and nothing is stored.",
        cmd_data_import,
    )
    importer.add_argument("file", type=Path, metavar="FILE", help="CSV file")
    importer.add_argument("--symbol", required=True, help="instrument, e.g. BTCUSD")
    importer.add_argument(
        "--interval",
        required=True,
        choices=[i.value for i in Interval],
        help="candle interval of the file",
    )
    _add_data_source(importer, settings, timeout_seconds=300.0)

    listing = _command(
        actions,
        "list",
        "list stored instruments and their coverage",
        "Print each stored symbol and interval with its first and last candle "
        "and the number of candles.",
        cmd_data_list,
    )
    _add_data_source(listing, settings, timeout_seconds=10.0)


def _add_data_source(
    parser: argparse.ArgumentParser,
    settings: ClientSettings,
    *,
    timeout_seconds: float,
) -> None:
    group = parser.add_argument_group("where the candles are")
    source = group.add_mutually_exclusive_group()
    source.add_argument(
        "--database-url",
        metavar="URL",
        help="postgresql:// URL (default: BACKCAST_MARKETDATA_URL, else "
        "BACKCAST_DATABASE_URL or DATABASE_URL)",
    )
    source.add_argument(
        "--gateway",
        metavar="ADDRESS",
        help="go through the gateway at host:port instead of the database "
        "(default: BACKCAST_GATEWAY when set and no --database-url is given)",
    )
    group.add_argument(
        "--owner",
        default=settings.owner,
        help="owner sent as the x-backcast-owner header with --gateway "
        "(default: BACKCAST_OWNER)",
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=timeout_seconds,
        metavar="SECONDS",
        help="deadline of the gateway call (default: %(default)s)",
    )
    parser.set_defaults(
        env_gateway=settings.gateway if settings.gateway_from_env else None
    )


if __name__ == "__main__":
    sys.exit(main())
