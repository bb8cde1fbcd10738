"""``routing-app topics ensure | check | create``."""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.table import Table

from routing_app.cli.context import pass_settings
from routing_app.config import Settings
from routing_app.topics.admin import (
    SubjectCompatibilityError,
    TopicReplicationError,
    TopicSettingsError,
    check_topics,
    create_topic,
    ensure_compatibility,
    ensure_topics,
)
from routing_app.topics.specs import SUBJECT_COMPATIBILITY, routing_topics

console = Console(stderr=True)


@click.group()
def topics() -> None:
    """The project's topics: routes, events, usage, control."""


@topics.command()
@pass_settings
def ensure(settings: Settings) -> None:
    """Create missing topics; refuse (exit 1) when one exists with settings that would lose data.

    Also makes the schema registry check every new schema of the project's subjects both ways
    (FULL_TRANSITIVE), so no worker or producer can register one the others cannot read."""
    specs = routing_topics(settings)
    try:
        created, tolerated = ensure_topics(settings.kafka, specs, settings.replication_factor)
    except TopicSettingsError as exc:
        for problem in exc.problems:
            console.print(f"[red]✗[/] {problem}")
        sys.exit(1)
    except TopicReplicationError as exc:
        console.print(f"[red]✗[/] {exc}")
        sys.exit(1)
    for name in created:
        console.print(f"[green]created[/] {name}")
    for problem in tolerated:
        console.print(f"[yellow]warning[/] {problem}")
    console.print(f"topics ready on {settings.bootstrap}")
    try:
        changed = ensure_compatibility(settings.registry_url, specs)
    except SubjectCompatibilityError as exc:
        console.print(f"[red]✗[/] {exc}")
        sys.exit(1)
    for subject, before in changed:
        console.print(
            f"[green]compatibility[/] {SUBJECT_COMPATIBILITY} on {subject} (was {before or 'unset'})"
        )


@topics.command()
@pass_settings
def check(settings: Settings) -> None:
    """Report each topic's state; exit 1 when one is missing or wrong."""
    specs = routing_topics(settings)
    missing, problems = check_topics(settings.kafka, specs, replication_factor=settings.replication_factor)
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
    try:
        created = create_topic(
            settings.kafka, name, partitions, replication_factor=settings.replication_factor
        )
    except TopicReplicationError as exc:
        raise click.ClickException(str(exc)) from exc
    if created:
        console.print(f"[green]created[/] {name} with {partitions} partitions")
    else:
        console.print(f"{name} already exists")
