"""The whole platform on one machine: PostgreSQL (embedded when none is
configured), migrations, and gateway, scheduler and workers as processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import grpc
from grpc_health.v1 import health_pb2

from backcast.cli.client import check_health
from backcast.cli.launch import LAUNCHER_PID_VAR
from backcast.config import redact_url

DEFAULT_DATA_DIR = Path(".backcast")
DEFAULT_GATEWAY_PORT = 50051
DEFAULT_SCHEDULER_PORT = 50052
HOST = "127.0.0.1"
TAIL_LINES = 20


def default_slots() -> int:
    """Slots per worker: one core is left for the services and the database."""
    return max(1, (os.cpu_count() or 2) - 1)


class PlatformError(Exception):
    """The platform could not start, or one of its services died."""


@dataclass(frozen=True)
class PlatformOptions:
    """How to start the platform; the defaults match `backcast up`."""

    n_workers: int = 2
    slots_per_worker: int = field(default_factory=default_slots)
    # 0 picks a free port.
    gateway_port: int = DEFAULT_GATEWAY_PORT
    scheduler_port: int = DEFAULT_SCHEDULER_PORT
    # Holds pgdata/ (the embedded database) and logs/.
    data_dir: Path = DEFAULT_DATA_DIR
    # Service logs; data_dir/logs when None.
    log_dir: Path | None = None
    # Service logs on this terminal instead of in files.
    verbose: bool = False
    # An existing PostgreSQL; None starts an embedded one under data_dir.
    database_url: str | None = None
    log_level: str = "INFO"
    # Added to every service's environment (e.g. short lease timings).
    extra_env: Mapping[str, str] = field(default_factory=dict)
    worker_id_prefix: str = "worker"
    start_timeout_seconds: float = 60.0
    stop_grace_seconds: float = 10.0

    @property
    def logs_path(self) -> Path:
        return self.log_dir if self.log_dir is not None else self.data_dir / "logs"


@dataclass
class ServiceProcess:
    """One service of the platform and, while it runs, its process."""

    name: str
    module: str
    address: str
    env: dict[str, str]
    log_path: Path | None
    process: subprocess.Popen[bytes] | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    _log_file: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise PlatformError(f"{self.name} is not running")
        return self.process.pid

    def returncode(self) -> int | None:
        """The exit code once the process has ended, else None."""
        return None if self.process is None else self.process.poll()

    def start(self) -> None:
        command = [sys.executable, "-m", "backcast.cli.launch", self.module]
        if self.log_path is None:
            stdout: int | IO[bytes] = subprocess.PIPE
        else:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = stdout = self.log_path.open("wb")
        self.tail.clear()
        # A session of its own: Ctrl-C on the terminal reaches only the
        # launcher, which then stops the services in order; and the service's
        # own child processes can be signalled as one group.
        self.process = subprocess.Popen(
            command,
            env={**self.env, LAUNCHER_PID_VAR: str(os.getpid())},
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if self.log_path is None:
            threading.Thread(target=self._echo_output, daemon=True).start()

    def _echo_output(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.tail.append(line)
            print(f"[{self.name}] {line}", file=sys.stderr, flush=True)

    def last_lines(self) -> list[str]:
        """The last lines the service wrote, to explain a failure."""
        if self.log_path is None:
            return list(self.tail)
        try:
            with self.log_path.open("rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - 16_384))
                text = log.read().decode(errors="replace")
        except OSError:
            return []
        return text.splitlines()[-TAIL_LINES:]

    def signal(self, signum: int) -> None:
        if self.returncode() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def kill_group(self) -> None:
        """SIGKILL the process and any child it left behind."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


class EmbeddedPostgres:
    """A PostgreSQL server in a wheel (pgserver), its data under `pgdata`."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata.resolve()
        self._server: Any = None

    def start(self) -> str:
        """Start (or join) the server and return its URL."""
        # platformdirs warns when XDG_RUNTIME_DIR is unset, which is normal
        # in containers and under sudo; it changes nothing here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pgserver.postgres_server import get_server

            self.pgdata.parent.mkdir(parents=True, exist_ok=True)
            _forget_dead_handles(self.pgdata)
            self._server = get_server(self.pgdata, cleanup_mode="stop")
        return str(self._server.get_uri())

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def _forget_dead_handles(pgdata: Path) -> None:
    # pgserver stops the server when the last process listed in this file
    # lets go of it. A launcher that was killed never let go, and its pid
    # would keep every later server running after its launcher stopped.
    handles = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    if not isinstance(pids, list):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and _is_alive(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Platform:
    """Gateway, scheduler and workers as processes, on one database.

    Each service runs through `backcast.cli.launch`, so it gets SIGTERM if the
    launcher dies without stopping it. Linux ties that to the thread that
    started the process: start and restart services from a thread that lives
    as long as they should (the main thread).
    """

    def __init__(self, options: PlatformOptions) -> None:
        self.options = options
        self.database_url = options.database_url or ""
        self.gateway: ServiceProcess | None = None
        self.scheduler: ServiceProcess | None = None
        self.workers: list[ServiceProcess] = []
        self._postgres: EmbeddedPostgres | None = None
        self._stopped = False
        self._ports: set[int] = set()

    @property
    def services(self) -> list[ServiceProcess]:
        heads = [s for s in (self.gateway, self.scheduler) if s is not None]
        return [*heads, *self.workers]

    @property
    def gateway_address(self) -> str:
        if self.gateway is None:
            raise PlatformError("the platform has not started")
        return self.gateway.address

    @property
    def pgdata(self) -> Path:
        return self.options.data_dir / "pgdata"

    def start(self) -> None:
        """Start everything and wait until every service answers SERVING.

        On any failure what was started is stopped again before the error
        propagates.

        Raises:
            PlatformError: naming the service that failed, with its last lines.
        """
        try:
            # Ports first: a port in use is the cheapest failure to report.
            gateway_port = self._pick_port(self.options.gateway_port, "--gateway-port")
            scheduler_port = self._pick_port(
                self.options.scheduler_port, "--scheduler-port"
            )
            self._start_database()
            self._migrate()
            self.gateway, self.scheduler = self._plan_heads(
                gateway_port, scheduler_port
            )
            self._launch([self.gateway, self.scheduler])
            self.workers = [self._plan_worker(i) for i in range(self.options.n_workers)]
            self._launch(self.workers)
        except BaseException:
            self.stop()
            raise

    def _start_database(self) -> None:
        if self.database_url:
            return
        self._postgres = EmbeddedPostgres(self.pgdata)
        try:
            self.database_url = self._postgres.start()
        except Exception as exc:
            log = self.pgdata / "log"
            raise PlatformError(
                f"embedded PostgreSQL did not start in {self.pgdata} ({exc}); "
                f"see {log}, or set BACKCAST_DATABASE_URL to use another server"
            ) from exc

    def _migrate(self) -> None:
        from backcast.db import migrate

        try:
            migrate(self.database_url)
        except Exception as exc:
            raise PlatformError(
                f"migrating {redact_url(self.database_url)} failed: {exc}"
            ) from exc

    def _pick_port(self, port: int, flag: str) -> int:
        # A free port is found by binding and closing a probe, so the kernel
        # may offer the same one twice; keep every service on its own.
        while True:
            picked = _pick_port(port, flag)
            if port != 0 or picked not in self._ports:
                self._ports.add(picked)
                return picked

    def _plan_heads(
        self, gateway_port: int, scheduler_port: int
    ) -> tuple[ServiceProcess, ServiceProcess]:
        gateway_address = f"{HOST}:{gateway_port}"
        scheduler_address = f"{HOST}:{scheduler_port}"
        database = {"BACKCAST_DATABASE_URL": self.database_url}
        gateway = self._plan(
            "gateway",
            "backcast.gateway",
            gateway_address,
            {**database, "BACKCAST_GATEWAY_ADDRESS": gateway_address},
        )
        scheduler = self._plan(
            "scheduler",
            "backcast.scheduler",
            scheduler_address,
            {**database, "BACKCAST_SCHEDULER_ADDRESS": scheduler_address},
        )
        return gateway, scheduler

    def _plan_worker(self, index: int) -> ServiceProcess:
        assert self.scheduler is not None
        name = f"{self.options.worker_id_prefix}-{index + 1}"
        address = f"{HOST}:{self._pick_port(0, '')}"
        return self._plan(
            name,
            "backcast.compute",
            address,
            {
                "BACKCAST_WORKER_ID": name,
                "BACKCAST_WORKER_SCHEDULER": self.scheduler.address,
                "BACKCAST_WORKER_ADDRESS": address,
                "BACKCAST_WORKER_SLOTS": str(self.options.slots_per_worker),
                # Slots read imported candles; they never write jobs.
                "BACKCAST_MARKETDATA_URL": self.database_url,
            },
        )

    def _plan(
        self, name: str, module: str, address: str, settings: Mapping[str, str]
    ) -> ServiceProcess:
        env = dict(os.environ)
        if module == "backcast.compute":
            # Workers never touch the job tables; they get only the market
            # data URL (on a shared server, give it a read-only role).
            env.pop("BACKCAST_DATABASE_URL", None)
            env.pop("DATABASE_URL", None)
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "BACKCAST_LOG_LEVEL": self.options.log_level,
                **settings,
                **self.options.extra_env,
            }
        )
        log_path = (
            None if self.options.verbose else self.options.logs_path / f"{name}.log"
        )
        return ServiceProcess(name, module, address, env, log_path)

    def _launch(self, services: Sequence[ServiceProcess]) -> None:
        for service in services:
            service.start()
        self._wait_until_serving(services)

    def _wait_until_serving(self, services: Iterable[ServiceProcess]) -> None:
        deadline = time.monotonic() + self.options.start_timeout_seconds
        pending = list(services)
        while pending:
            for service in list(pending):
                code = service.returncode()
                if code is not None:
                    raise PlatformError(
                        self.explain(service, f"exited with code {code} while starting")
                    )
                if _is_serving(service.address):
                    pending.remove(service)
            if pending and time.monotonic() > deadline:
                raise PlatformError(
                    self.explain(
                        pending[0],
                        f"did not answer health checks on {pending[0].address} within "
                        f"{self.options.start_timeout_seconds:g} s",
                    )
                )
            if pending:
                time.sleep(0.1)

    def explain(self, service: ServiceProcess, problem: str) -> str:
        """A message about `service` followed by the last lines it wrote."""
        where = str(service.log_path) if service.log_path else "its output"
        lines = service.last_lines()
        if not lines:
            return f"{service.name} {problem}; {where} is empty"
        body = "\n".join(f"    {line}" for line in lines)
        return f"{service.name} {problem}; last lines of {where}:\n{body}"

    def first_exited(self) -> ServiceProcess | None:
        """A service whose process has ended, if any."""
        for service in self.services:
            if service.process is not None and service.returncode() is not None:
                return service
        return None

    def restart(self, service: ServiceProcess) -> None:
        """Start an ended service again with the same settings."""
        service.close_log()
        service.start()
        self._wait_until_serving([service])

    def stop(self) -> None:
        """Stop every service, then the embedded database; safe to repeat.

        The gateway and the workers go first so that draining workers can
        still report to the scheduler; each group gets SIGTERM, then SIGKILL
        after the grace period.
        """
        if self._stopped:
            return
        self._stopped = True
        try:
            workers_and_gateway = [s for s in self.services if s is not self.scheduler]
            self._stop_group(workers_and_gateway)
            self._stop_group([self.scheduler] if self.scheduler else [])
        finally:
            for service in self.services:
                service.close_log()
            if self._postgres is not None:
                self._postgres.stop()

    def _stop_group(self, services: Sequence[ServiceProcess]) -> None:
        for service in services:
            service.signal(signal.SIGTERM)
        deadline = time.monotonic() + self.options.stop_grace_seconds
        for service in services:
            if service.process is None:
                continue
            with contextlib.suppress(subprocess.TimeoutExpired):
                service.process.wait(max(0.0, deadline - time.monotonic()))
            service.kill_group()

    def describe(self) -> list[str]:
        """Where each part listens, one line each."""
        lines = []
        for service in self.services:
            pid = service.process.pid if service.process else "-"
            extra = ""
            if service.module == "backcast.compute":
                slots = self.options.slots_per_worker
                extra = f"  {slots} slot{'s' if slots != 1 else ''}"
            lines.append(f"{service.name:<11} {service.address:<21} pid {pid}{extra}")

        if self._postgres is not None:
            database = f"embedded PostgreSQL, data in {self.pgdata}"
        else:
            database = redact_url(self.database_url)
        lines.append(f"{'database':<11} {database}")
        if self.options.verbose:
            lines.append(f"{'logs':<11} on this terminal")
        else:
            lines.append(f"{'logs':<11} {self.options.logs_path}/")
        return lines


def _pick_port(port: int, flag: str) -> int:
    """`port` if it is free, or a free one when `port` is 0."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR lets the probe ignore connections in TIME_WAIT from a
        # platform that just stopped, while a live listener still refuses it.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            raise PlatformError(
                f"port {port} on {HOST} is in use; stop what listens there or pass "
                f"{flag} 0 for a free port"
            ) from None
        return int(probe.getsockname()[1])


def _is_serving(address: str) -> bool:
    try:
        status = check_health(address, timeout_seconds=0.5)
    except grpc.RpcError:
        return False
    return bool(status == health_pb2.HealthCheckResponse.SERVING)
