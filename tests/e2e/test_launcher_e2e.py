"""`backcast up` and `backcast demo` start every service and stop them all."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest
from e2e_support import backcast_command, run_backcast

pytestmark = pytest.mark.e2e

_SERVICE_LINE = re.compile(r"^\s+(\S+)\s+(127\.0\.0\.1:\d+)\s+pid (\d+)", re.MULTILINE)


def _launcher_env(database_url: str | None) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("BACKCAST_DATABASE_URL", "DATABASE_URL", "BACKCAST_GATEWAY"):
        env.pop(name, None)
    if database_url is not None:
        env["BACKCAST_DATABASE_URL"] = database_url
    return env


def _read_until(process: subprocess.Popen[str], marker: str, timeout: float) -> str:
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen = ""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no {marker!r} within {timeout} s:\n{seen}") from None
        if line is None:
            raise AssertionError(f"launcher ended before {marker!r}:\n{seen}")
        seen += line
    return seen


def _assert_all_gone(pids: list[int]) -> None:
    alive = [pid for pid in pids if psutil.pid_exists(pid) and _is_running(pid)]
    assert not alive, f"still running: {alive}"


def _is_running(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def test_up_serves_until_ctrl_c_then_stops_every_service(
    database_url: str, tmp_path: Path
) -> None:
    command = [
        *backcast_command(),
        "up",
        "--gateway-port",
        "0",
        "--scheduler-port",
        "0",
        "--workers",
        "1",
        "--slots",
        "1",
        "--data-dir",
        str(tmp_path),
    ]
    process = subprocess.Popen(
        command,
        env=_launcher_env(database_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output = _read_until(process, "backcast is up", timeout=60)
        services = {m[0]: (m[1], int(m[2])) for m in _SERVICE_LINE.findall(output)}
        assert set(services) == {"gateway", "scheduler", "worker-1"}, output
        health = run_backcast(["health", services["gateway"][0]])
        assert health.returncode == 0, health.stderr

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    _assert_all_gone([pid for _, pid in services.values()])
    logs = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert logs == ["gateway.log", "scheduler.log", "worker-1.log"]
    assert "server_started" in (tmp_path / "logs" / "gateway.log").read_text()


def test_demo_on_embedded_postgres_succeeds_and_leaves_nothing_running(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"

    result = run_backcast(
        ["demo", "--workers", "2", "--slots", "1", "--data-dir", str(data_dir)],
        env=_launcher_env(None),
        timeout_seconds=150,
    )

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "embedded PostgreSQL" in output
    assert "12 of 12 backtests succeeded" in result.stdout
    pids = [int(m[2]) for m in _SERVICE_LINE.findall(result.stdout)]
    assert len(pids) == 4, output
    _assert_all_gone(pids)
    leftover = [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if str(data_dir) in " ".join(p.info["cmdline"] or [])
    ]
    assert not leftover, f"processes still using {data_dir}: {leftover}"
