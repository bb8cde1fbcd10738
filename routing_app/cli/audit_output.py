"""How ``routing-app audit`` shows its answers: the table, CSV and JSON outputs and their columns.

The commands in ``audit.py`` decide what to read and answer; what each row looks like in a table
or a CSV file is a separate question, kept here so the commands read as what they compute.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from routing_app.audit.replay import Step
from routing_app.audit.times import format_time, iso_time

# A column: its heading, and how a row shows in it.
Column = tuple[str, Callable[[Any], str]]


def emit(
    fmt: str,
    document: dict[str, Any],
    rows: Sequence[Any],
    columns: Sequence[Column],
    csv_columns: Sequence[Column],
    title: str | None = None,
) -> None:
    """Writes the answer on stdout: ``document`` as JSON, or ``rows`` as CSV or a table."""
    if fmt == "json":
        click.echo(json.dumps(document, indent=None, sort_keys=False))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow([name for name, _ in csv_columns])
        for row in rows:
            writer.writerow([get(row) for _, get in csv_columns])
    else:
        table = Table(*(name for name, _ in columns), title=title)
        for row in rows:
            table.add_row(*(get(row) for _, get in columns))
        out = Console()
        (out if out.is_terminal else Console(width=200)).print(table)


def partitions_text(partitions: Sequence[int] | None) -> str:
    return "hashed" if partitions is None else ",".join(map(str, partitions)) or "hashed"


def optional_text(value: Any) -> str:
    return "" if value is None else str(value)


def _epochs(a: int | None, b: int | None) -> str:
    if a is None and b is None:
        return ""
    return f"{'' if a is None else a}→{'' if b is None else b}"


def _pause(ms: float | None) -> str:
    return "" if ms is None else f"{ms:g} ms"


def _route_ref(step: Step) -> str:
    if not step.changes_route:
        return ""
    return "gone" if step.route_offset is None else f"#{step.route_offset}"


def _change(step: Step) -> str:
    if not step.changes_route:
        return ""
    return f"{partitions_text(step.from_partitions)} → {partitions_text(step.to_partitions)}"


# -- steps: `replay` and `tenant` -----------------------------------------------------------------
REPLAY_COLUMNS: list[Column] = [
    ("time", lambda s: format_time(s.at_ms)),
    ("topic/tenant", lambda s: s.key if s.tenant else f"{s.topic} (hash base)"),
    ("action", lambda s: s.action),
    ("change", _change),
    ("epoch", lambda s: _epochs(s.from_epoch, s.to_epoch) if s.changes_route else ""),
    ("status", lambda s: s.status),
    ("reason", lambda s: s.reason),
    ("pause", lambda s: _pause(s.pause_ms)),
    ("route", _route_ref),
]
HISTORY_COLUMNS: list[Column] = [
    ("time", lambda s: format_time(s.at_ms)),
    ("topic", lambda s: s.topic),
    ("action", lambda s: s.action),
    ("placement", lambda s: partitions_text(s.placement)),
    ("epoch", lambda s: optional_text(s.to_epoch) if s.changes_route else ""),
    ("status", lambda s: s.status),
    ("reason", lambda s: s.reason),
    ("pause", lambda s: _pause(s.pause_ms)),
    ("by", lambda s: s.worker_id),
    ("route", _route_ref),
]
STEP_CSV: list[Column] = [
    ("at", lambda s: optional_text(iso_time(s.at_ms))),
    ("at_ms", lambda s: str(s.at_ms)),
    ("topic", lambda s: s.topic),
    ("tenant", lambda s: s.tenant),
    ("action", lambda s: s.action),
    ("from_partitions", lambda s: " ".join(map(str, s.from_partitions))),
    ("to_partitions", lambda s: " ".join(map(str, s.to_partitions))),
    ("from_epoch", lambda s: optional_text(s.from_epoch)),
    ("to_epoch", lambda s: optional_text(s.to_epoch)),
    ("status", lambda s: s.status),
    ("mode", lambda s: s.mode),
    ("placement", lambda s: "hashed" if s.placement is None else " ".join(map(str, s.placement))),
    ("epoch", lambda s: optional_text(s.epoch)),
    ("reason", lambda s: s.reason),
    ("pause_ms", lambda s: optional_text(s.pause_ms)),
    ("worker_id", lambda s: s.worker_id),
    ("command_id", lambda s: optional_text(s.command_id)),
    ("event_offset", lambda s: str(s.event_offset)),
    ("route_offset", lambda s: optional_text(s.route_offset)),
]

# -- placements: `at` -----------------------------------------------------------------------------
PLACEMENT_COLUMNS: list[Column] = [
    ("topic", lambda p: p.topic),
    # The empty tenant's key holds the topic's hash base (routing-app topics expand).
    ("tenant", lambda p: p.tenant or "(hash base)"),
    ("partitions", lambda p: partitions_text(p.partitions)),
    ("epoch", lambda p: optional_text(p.epoch)),
    ("status", lambda p: p.status),
    ("mode", lambda p: p.mode),
    ("since", lambda p: format_time(p.since_ms) if p.since_ms else ""),
    ("action", lambda p: p.action),
    ("reason", lambda p: p.reason),
]
PLACEMENT_CSV: list[Column] = [
    ("topic", lambda p: p.topic),
    ("tenant", lambda p: p.tenant),
    ("partitions", lambda p: "hashed" if p.partitions is None else " ".join(map(str, p.partitions))),
    ("epoch", lambda p: optional_text(p.epoch)),
    ("status", lambda p: p.status),
    ("mode", lambda p: p.mode),
    ("since", lambda p: optional_text(iso_time(p.since_ms) if p.since_ms else None)),
    ("since_ms", lambda p: optional_text(p.since_ms or None)),
    ("action", lambda p: p.action),
    ("reason", lambda p: p.reason),
    ("event_offset", lambda p: optional_text(p.event_offset)),
]

# -- discrepancies: `verify` ----------------------------------------------------------------------
DISCREPANCY_COLUMNS: list[Column] = [
    ("key", lambda d: d.key),
    ("kind", lambda d: d.kind),
    ("expected", lambda d: d.expected),
    ("found", lambda d: d.found),
    ("event offset", lambda d: optional_text(d.event_offset)),
    ("route offset", lambda d: optional_text(d.route_offset)),
]
DISCREPANCY_CSV: list[Column] = [
    *DISCREPANCY_COLUMNS[:4],
    ("event_offset", lambda d: optional_text(d.event_offset)),
    ("route_offset", lambda d: optional_text(d.route_offset)),
]
