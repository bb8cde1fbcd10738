"""How a ``routing-app bench`` command shows what it does and what it measured.

Progress and the summary table go to stderr (``err``); the figures' JSON line, with ``--json``,
is the only thing on stdout. Apart from the commands so that their modules are only options
and calls.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

err = Console(stderr=True)

# (figure, comparison, target, applies) -> shown in the summary
Target = tuple[str, str, float, Callable[[dict[str, Any]], bool]]


def always(_: dict[str, Any]) -> bool:
    """A target that applies whatever the sizes."""
    return True


class RichReporter:
    """A benchmark's notes and progress bars, on the console it is given (stderr)."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def note(self, message: str) -> None:
        self.console.print(message)

    @contextlib.contextmanager
    def progress(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
        ) as progress:
            task = progress.add_task(description, total=total)
            yield lambda n: progress.advance(task, n)


def finish(title: str, result: dict[str, Any], as_json: bool, targets: list[Target]) -> None:
    """The figures as a table on stderr, each target met or missed; with ``as_json`` the one
    JSON line on stdout."""
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target")
    goals = {name: (op, goal, applies) for name, op, goal, applies in targets}
    for name, value in result.items():
        if isinstance(value, dict | list):
            continue
        shown = f"{value:,}" if isinstance(value, int | float) and not isinstance(value, bool) else str(value)
        target = ""
        if name in goals:
            op, goal, applies = goals[name]
            if applies(result):
                met = value >= goal if op == ">=" else value <= goal
                target = f"{'[green]met' if met else '[red]missed'}[/] ({op} {goal:g})"
            else:
                target = f"({op} {goal:g} at full size)"
        table.add_row(name, shown, target)
    err.print(table)
    if as_json:
        click.echo(json.dumps(result, separators=(",", ":")))


def print_cprofile(result: dict[str, Any]) -> None:
    """Takes the cProfile text (``--profile``) out of the figures and prints it on stderr."""
    cprofile = result.pop("cprofile", None)
    if cprofile:
        click.echo(cprofile, err=True)


def print_stages(result: dict[str, Any]) -> None:
    """A rebuild's cost per route by stage (``--profile``), as a table on stderr."""
    if "us_per_route" in result:
        stages = Table("stage", "us per route", title="where a route's time goes")
        for name, us in result["us_per_route"].items():
            stages.add_row(name, f"{us:.2f}")
        err.print(stages)
