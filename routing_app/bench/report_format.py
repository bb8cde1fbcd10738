"""How ``benchmarks.md`` writes a figure and a table: the text primitives every section shares.

Apart from the sections so that the figures table, the balance table and the tests all write a
number, a missing figure ("not measured") and a markdown table the same way.
"""

from __future__ import annotations

import math
from typing import Any

NOT_MEASURED = "not measured"


def is_number(value: Any) -> bool:
    """A finite int or float; a bool is not a figure, whatever Python thinks."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def show(value: Any, unit: str = "") -> str:
    """A figure as the report writes it; a missing one is "not measured"."""
    if isinstance(value, bool):
        return str(value).lower()
    if not is_number(value):
        return NOT_MEASURED
    if isinstance(value, int):
        text = f"{value:,}"
    elif abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}" if unit else text


def two_places(value: Any) -> str:
    """A ratio such as max/mean load, where the second decimal is the news."""
    return f"{value:.2f}" if is_number(value) else NOT_MEASURED


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """The lines of a markdown table; a ``|`` inside a cell is escaped."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines
