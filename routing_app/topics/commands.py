"""``routing-app topics ensure | check | create``."""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.table import Table

from routing_app.config import Settings
from routing_app.topics.admin import (
    TopicSettingsError,
    check_topics,
    create_topic,
    ensure_topics,
)
from routing_app.topics.specs import routing_topics

pass_settings = click.make_pass_decorator(Settings)
console = Console(stderr=True)


@click.group()
def topics() -> None:
    """The project's topics: routes, events, usage, control."""


@topics.command()
@pass_settings
def ensure(settings: Settings) -> None:
    """Create missing topics; refuse (exit 1) when one exists with settings that would lose data."""
    try:
        created, tolerated = ensure_topics(settings.bootstrap, routing_topics(settings),
                                           settings.replication_factor)
    except TopicSettingsError as exc:
        for problem in exc.problems:
            console.print(f"[red]✗[/] {problem}")
        sys.exit(1)
    for name in created:
        console.print(f"[green]created[/] {name}")
    for problem in tolerated:
        console.print(f"[yellow]warning[/] {problem}")
    console.print(f"topics ready on {settings.bootstrap}")


@topics.command()
@pass_settings
def check(settings: Settings) -> None:
    """Report each topic's state; exit 1 when one is missing or wrong."""
    specs = routing_topics(settings)
    missing, problems = check_topics(settings.bootstrap, specs)
    table = Table("topic", "partitions", "state")
    for spec in specs:
        mine = [p for p in problems if p.topic == spec.name]
        if spec.name in missing:
            state = "[red]missing[/] (run `routing-app topics ensure`)"
        elif any(p.fatal for p in mine):
            state = "[red]" + "; ".join(str(p) for p in mine if p.fatal) + "[/]"
        elif mine:
            state = "[yellow]" + "; ".join(str(p) for p in mine) + "[/]"
        else:
            state = "[green]ok[/]"
        table.add_row(spec.name, str(spec.partitions), state)
    Console().print(table)
    if missing or any(p.fatal for p in problems):
        sys.exit(1)


@topics.command()
@click.argument("name")
@click.option("--partitions", "-p", type=click.IntRange(1), required=True)
@pass_settings
def create(settings: Settings, name: str, partitions: int) -> None:
    """Create a data topic (producers never create topics implicitly)."""
    if create_topic(settings.bootstrap, name, partitions,
                    replication_factor=settings.replication_factor):
        console.print(f"[green]created[/] {name} with {partitions} partitions")
    else:
        console.print(f"{name} already exists")
