"""Plain-text tables and number formats for the command-line client."""

from __future__ import annotations

from collections.abc import Sequence

# Columns whose cells read as numbers line up on the right.
_NUMERIC_CHARS = frozenset("0123456789.,-+%e ")


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Rows under a header and a rule, columns two spaces apart.

    A column whose every non-empty cell looks like a number is right-aligned.
    No colours or box characters, so the output reads the same in a log file.
    """
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    numeric = [
        _is_numeric_column([row[i] for row in rows]) for i in range(len(headers))
    ]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.rjust(widths[i]) if numeric[i] else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "  ".join(padded).rstrip()

    rule = ["-" * w for w in widths]
    return "\n".join([line(headers), line(rule), *(line(row) for row in rows)])


def _is_numeric_column(cells: Sequence[str]) -> bool:
    filled = [c for c in cells if c]
    return bool(filled) and all(set(c) <= _NUMERIC_CHARS for c in filled)


def percent(fraction: float, digits: int = 2) -> str:
    """`0.0321` as `3.21%`."""
    return f"{fraction * 100:.{digits}f}%"


def number(value: float, digits: int = 2) -> str:
    return f"{value:,.{digits}f}"
