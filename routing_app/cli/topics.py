"""``routing-app topics ensure | check | create | expand | rebase``."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.table import Table

from routing_app.cli.context import pass_settings
from routing_app.cli.routes import issuer, load_routes
from routing_app.config import Settings
from routing_app.control import ControlAction, ControlClient, ControlCommand
from routing_app.control.client import now_ms
from routing_app.control.expand import ExpansionError, expand_topic
from routing_app.routes.model import HASH_BASE_TENANT
from routing_app.topics import partition_count
from routing_app.topics.admin import (
    SubjectCompatibilityError,
    TopicReplicationError,
    TopicSettingsError,
    check_topics,
    create_topic,
    ensure_compatibility,
    ensure_topics,
)
from routing_app.topics.hashing import check_hashing
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


@topics.command()
@click.argument("name")
@click.option(
    "--to", "grow_to", type=click.IntRange(2), required=True, help="The partition count to grow to."
)
@click.option(
    "--wait",
    type=click.FloatRange(1),
    default=None,
    help="Seconds to wait for every live producer to acknowledge the hash base "
    "[default: drain_timeout_ms + 15 s].",
)
@click.option("--reason", default="", help="Why, for the audit trail.")
@pass_settings
def expand(settings: Settings, name: str, grow_to: int, wait: float | None, reason: str) -> None:
    """Grow a data topic without moving any key: its hash base first, then the partitions.

    Unrouted keys keep hashing by the count before the growth (the base, recorded on the
    routes topic and acknowledged by every live producer before the broker's count is
    raised); the planner then fills the new partitions with ordering-safe moves. Exit 1, with
    the topic not grown, when a producer did not acknowledge the base in time, the writer
    refused, or the broker refused."""
    wait_s = wait if wait is not None else settings.drain_timeout_ms / 1000 + 15
    try:
        with console.status("expanding") as status:
            done = expand_topic(
                settings,
                name,
                grow_to,
                wait_s=wait_s,
                issued_by=issuer(settings),
                reason=reason,
                progress=lambda text: status.update(text),
            )
    except ExpansionError as exc:
        console.print(f"[red]✗[/] {exc}")
        sys.exit(1)
    acked = done.acknowledged
    how = (
        f"acknowledged by {int(acked.observed.get('producers_acked', 0))} live producer(s) in "
        f"{acked.observed.get('pause_ms', 0):.0f} ms"
        if acked is not None
        else "recorded before"
    )
    console.print(
        f"[green]expanded[/] {name}: {done.before} -> {done.after} partitions; unrouted keys hash by "
        f"{done.base} (hash base {how}); the planner fills partitions {done.before}..{done.after - 1} "
        f"with strict moves (reason_kind fill: `routing-app audit replay --topic {name}`)"
    )


@topics.command()
@click.argument("name")
@click.option("--reason", default="", help="Why, for the audit trail.")
@click.option("--wait", type=click.FloatRange(0), default=15.0, show_default=True)
@pass_settings
def rebase(settings: Settings, name: str, reason: str, wait: float) -> None:
    """After expand: move the hashed tenants to murmur2 % partitions, then drop the hash base.

    The planner moves them in drained batches (its move budget per cycle); once none is left
    it drops the base (an event `rebase`). Exit 1 when the writer refused."""
    command = ControlCommand(
        ControlAction.REBASE, name, HASH_BASE_TENANT, now_ms(), reason=reason, issued_by=issuer(settings)
    )
    with ControlClient(settings) as client:
        event = client.send(command, wait_s=wait)
    if event is None:
        console.print(f"[red]no answer from a worker within {wait}s[/] (is a worker running?)")
        sys.exit(2)
    if not event.applied:
        console.print(f"[red]rejected[/]: {event.reason}")
        sys.exit(1)
    console.print(f"[green]rebasing[/] {name}: {event.reason}")


@topics.command()
@click.argument("name")
@click.option(
    "--records",
    type=click.IntRange(1),
    default=1000,
    show_default=True,
    help="The last records of each partition to judge.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@pass_settings
def hashing(settings: Settings, name: str, records: int, as_json: bool) -> None:
    """Find records a producer hashed by the partition count on a topic with a hash base.

    After `topics expand`, RoutingProducers hash unrouted keys by the base; a plain Kafka
    client (or any producer that does not know the base) hashes by the partition count, so
    its records land elsewhere and a key's records end up on two partitions. Judges the last
    --records records of every partition (key-only records; needs read access to the topic).
    Exit 1 when some were hashed by the count."""
    count = partition_count(settings.kafka, name)
    if count is None:
        raise click.ClickException(f"topic {name!r} does not exist on {settings.bootstrap}")
    cache = load_routes(settings, 30.0)
    try:
        routes = dict(cache.routes_for_topic(name) or {})
    finally:
        cache.stop()
    check = check_hashing(settings.kafka, name, count, routes, records)
    found = {
        "topic": name,
        "partitions": check.partitions,
        "hash_base": check.base,
        "records": check.records,
        "as_routed": check.as_routed,
        "hashed_by_count": check.by_count,
        "not_judged": check.elsewhere,
        "samples": [{"key": k.decode("utf-8", "replace"), "partition": p} for k, p in check.samples],
    }
    if as_json:
        click.echo(json.dumps(found))
    else:
        base = f"hash base {check.base}" if check.base is not None else "no hash base (hashing by the count)"
        Console().print(
            f"{name}: {check.partitions} partitions, {base}; of the last {check.records:,} keyed "
            f"records: {check.as_routed:,} where RoutingProducers put them, "
            f"[{'red' if check.by_count else 'green'}]{check.by_count:,} hashed by the partition count[/], "
            f"{check.elsewhere:,} not judged (tenant= records, explicit partitions, moves)"
        )
        for k, p in check.samples:
            Console().print(f"  key {k!r} on partition {p}")
    if check.by_count:
        sys.exit(1)
