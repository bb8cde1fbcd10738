"""The figures ``routing-app bench report`` works from: ``BenchResults`` and the runs' names.

Apart from the markdown because two sides share it: ``report_runs`` fills it (running the
commands, or reading a saved folder) and the report's sections read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from routing_app.bench.report_format import is_number

# The balance table's cells: one simulator run per (Zipf exponent, partitions).
BALANCE_ZIPFS = (1.0, 1.4, 2.0)
BALANCE_PARTITIONS = (10, 50, 100)


def balance_name(zipf: float, partitions: int) -> str:
    """The run name of one cell of the balance table."""
    return f"simulate-balance-z{zipf:g}-p{partitions}"


@dataclass
class BenchResults:
    """Figures by run name (``producer``, ``rebuild-100000``, ``simulate-flash``, ...), the
    commands that printed them, those that failed and why, and the machine they ran on."""

    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    commands: dict[str, str] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    quick: bool | None = None
    invocation: str | None = None  # the report command that ran them, when one did
    note: str | None = None  # what the person who ran them said about the machine

    def why_missing(self, prefix: str, default: str) -> str:
        """Why no figures of the runs named ``prefix...``: they failed, or they did not run."""
        failed = sorted(name for name in self.failed if name.startswith(prefix))
        if failed:
            return f"{', '.join(f'`{n}`' for n in failed)} failed (see *Runs that failed*)."
        return default

    def figure(self, run: str, key: str) -> Any:
        return self.results.get(run, {}).get(key)

    def rebuilds(self) -> list[tuple[str, dict[str, Any]]]:
        """Every rebuild run with a route count, fewest routes first."""
        found = [
            (name, r)
            for name, r in self.results.items()
            if name.startswith("rebuild") and is_number(r.get("routes"))
        ]
        return sorted(found, key=lambda item: item[1]["routes"])
