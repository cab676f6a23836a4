"""The table printed after a run, and the JSON file each run leaves behind."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from platform_bench.figures import Figure, Outcome, format_number

HEADER = ("benchmark", "figure", "median", "baseline", "target", "met?")


def table_rows(figures: Sequence[Figure]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for figure in figures:
        unit = f" {figure.unit}" if figure.unit else ""
        met = {True: "yes", False: "NO", None: "-"}[figure.met]
        rows.append(
            (
                figure.benchmark,
                figure.name,
                format_number(figure.median) + unit,
                format_number(figure.baseline_median) if figure.baseline else "-",
                figure.target.text() if figure.target else "-",
                met,
            )
        )
    return rows


def text_table(figures: Sequence[Figure]) -> str:
    rows = [HEADER, *table_rows(figures)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = []
    for n, row in enumerate(rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def markdown_table(figures: Sequence[Figure]) -> str:
    """The same table in Markdown, for the README and docs/benchmarks.md."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + " --- |" * len(HEADER)]
    for row in table_rows(figures):
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def read_figures(path: Path) -> list[Figure]:
    """The figures of a run's JSON file, in the order they were measured."""
    document = json.loads(path.read_text())
    return [
        Figure.from_dict(figure)
        for outcome in document["benchmarks"].values()
        for figure in outcome["figures"]
    ]


def machine_info(server_url: str) -> dict[str, Any]:
    with psycopg.connect(server_url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        # Off on some test servers: dead row versions then pile up in the
        # queue's indexes between the benchmarks' own VACUUMs.
        autovacuum = conn.execute("SHOW autovacuum").fetchone()
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgres": row[0] if row else None,
        "autovacuum": autovacuum[0] if autovacuum else None,
        "load_average": list(os.getloadavg()),
    }


def git_commit() -> str | None:
    try:
        found = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return found.stdout.strip()


def write_json(
    out_dir: Path,
    *,
    started_at: datetime,
    settings: Mapping[str, Any],
    machine: Mapping[str, Any],
    outcomes: Mapping[str, Outcome],
    errors: Mapping[str, str],
) -> Path:
    """One file per run, named by its start time, never overwritten."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = started_at.strftime("%Y%m%dT%H%M%SZ")
    path = out_dir / f"bench-{stamp}.json"
    document = {
        "started_at": started_at.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "git_commit": git_commit(),
        "machine": dict(machine),
        "settings": dict(settings),
        "benchmarks": {
            name: {
                "figures": [figure.to_dict() for figure in outcome.figures],
                "details": outcome.details,
            }
            for name, outcome in outcomes.items()
        },
        "errors": dict(errors),
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None
