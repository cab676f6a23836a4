"""Figures: what a benchmark measured in each run, its median and its target."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Target:
    """A figure's goal: at least `value` (`at_least`) or at most `value`."""

    value: float
    at_least: bool

    def met_by(self, figure: float) -> bool:
        if math.isnan(figure):
            return False
        return figure >= self.value if self.at_least else figure <= self.value

    def text(self) -> str:
        return f"{'>=' if self.at_least else '<='} {self.value:,g}"

    @classmethod
    def parse(cls, text: str) -> Target:
        """The target `text()` wrote, e.g. ">= 20,000"."""
        sign, _, value = text.partition(" ")
        if sign not in (">=", "<="):
            raise ValueError(f"target {text!r} must start with >= or <=")
        return cls(float(value.replace(",", "")), at_least=sign == ">=")


def at_least(value: float) -> Target:
    return Target(value, at_least=True)


def at_most(value: float) -> Target:
    return Target(value, at_least=False)


@dataclass
class Figure:
    """One measured quantity over several runs, beside its baseline.

    The baseline is measured in the same run on the same database, so the
    two read together whatever else the machine was doing.
    """

    benchmark: str
    name: str
    unit: str
    runs: list[float] = field(default_factory=list)
    baseline_runs: list[float] = field(default_factory=list)
    # What the baseline is, in a few words ("raw SQL SKIP LOCKED loop").
    baseline: str = ""
    target: Target | None = None
    note: str = ""

    @property
    def median(self) -> float:
        return median(self.runs)

    @property
    def baseline_median(self) -> float:
        return median(self.baseline_runs)

    @property
    def met(self) -> bool | None:
        """Whether the median meets the target; None without a target."""
        return None if self.target is None else self.target.met_by(self.median)

    def to_dict(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "name": self.name,
            "unit": self.unit,
            "median": _json_number(self.median),
            "runs": [_json_number(v) for v in self.runs],
            "baseline": self.baseline or None,
            "baseline_median": _json_number(self.baseline_median),
            "baseline_runs": [_json_number(v) for v in self.baseline_runs],
            "target": None if self.target is None else self.target.text(),
            "met": self.met,
            "note": self.note or None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Figure:
        """A figure as `to_dict` wrote it to a run's JSON file."""
        target = data.get("target")
        return cls(
            benchmark=data["benchmark"],
            name=data["name"],
            unit=data["unit"],
            runs=[_from_json_number(v) for v in data["runs"]],
            baseline_runs=[_from_json_number(v) for v in data["baseline_runs"]],
            baseline=data.get("baseline") or "",
            target=None if target is None else Target.parse(target),
            note=data.get("note") or "",
        )


def median(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan


def percentile(values: Sequence[float], fraction: float) -> float:
    """The `fraction` quantile by the nearest-rank method; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def jain_index(shares: Sequence[float]) -> float:
    """Jain's fairness index, (sum x)^2 / (n sum x^2): 1 when all are equal,
    1/n when one party has everything (Jain, Chiu and Hawe 1984,
    arXiv:cs/9809099)."""
    total = sum(shares)
    squares = sum(x * x for x in shares)
    if not shares or squares == 0:
        return math.nan
    return total * total / (len(shares) * squares)


def _from_json_number(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 6)


def _number(value: float) -> str:
    if math.isnan(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def format_number(value: float) -> str:
    """A figure as the table prints it: grouped thousands, 3 significant digits."""
    return _number(value)


@dataclass
class Outcome:
    """What one benchmark returns: its figures, and details for the JSON
    (sizes, settings, CPU seconds per process) that the table leaves out."""

    figures: list[Figure]
    details: dict[str, Any] = field(default_factory=dict)
