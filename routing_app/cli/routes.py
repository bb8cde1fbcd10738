"""``routing-app routes pin | unpin | freeze | unfreeze | evacuate | list | show``: operator
access to the routing table."""

from __future__ import annotations

import getpass
import json
import sys

import click
from rich.console import Console
from rich.table import Table

from routing_app.cli.context import pass_settings
from routing_app.client.cache import RouteCache
from routing_app.codec import probe_registry, registry_client
from routing_app.config import Settings
from routing_app.connection import polled_client_settings
from routing_app.control import ControlAction, ControlClient, ControlCommand
from routing_app.control.client import now_ms
from routing_app.routes.codec import RouteCodec
from routing_app.routes.model import Route, RouteMode

err = Console(stderr=True, soft_wrap=True)  # one line per message, whatever the width


@click.group()
def routes() -> None:
    """Read and change the routing table (changes go through the single writer).

    Commands that change it exit 0 once the change is done (a strict move: once its drain
    completed), 1 when the writer rejected it or the move was aborted (the reason is printed),
    and 2 when no final answer came within --wait (or Kafka or the registry could not be
    reached).
    """


def issuer(settings: Settings) -> str:
    """Who issues a command: the Kafka principal where there is one (the writer may check it
    against operator_principals), else the local user name, for the audit trail."""
    return settings.principal or getpass.getuser()


def _send(settings: Settings, command: ControlCommand, wait: float) -> None:
    with ControlClient(settings) as client:
        outcome = client.submit(command, wait_s=wait)
    if wait <= 0:
        err.print(f"sent command {command.command_id}")
        return
    event, end = outcome.answer, outcome.end
    who = f"{command.topic}/{command.tenant}"
    if event is None:
        err.print(
            f"[red]no answer from a worker within {wait}s[/] (command {command.command_id}"
            f" is queued on {settings.control_topic!r}; is a worker running?)"
        )
        sys.exit(2)
    if not event.applied:
        err.print(f"[red]rejected[/]: {event.reason}")
        sys.exit(1)
    if outcome.aborted and end is not None:
        err.print(f"[red]aborted[/]: {command.action.value} {who} did not happen: {end.reason}")
        sys.exit(1)
    if outcome.moving:
        err.print(
            f"[yellow]still moving[/] after {wait}s: {who} "
            f"{list(event.from_partitions) or 'hashed'} -> "
            f"{list(event.to_partitions) or 'hashed'} is draining (epoch {event.to_epoch})"
            f"; it ends with drain-complete or drain-abort on {settings.events_topic!r} "
            f"(`routing-app routes show {command.topic} {command.tenant}`)"
        )
        sys.exit(2)
    if outcome.forced and end is not None:
        err.print(f"[yellow]forced[/]: {end.reason}")
    if command.action in (ControlAction.PIN, ControlAction.UNPIN):
        err.print(
            f"[green]{event.action}[/] {who}: "
            f"{list(event.from_partitions) or 'hashed'} -> "
            f"{list(event.to_partitions) or 'hashed'} (epoch {event.to_epoch})"
            + (f", {end.reason}" if end is not None and not outcome.forced else "")
        )
    else:
        err.print(f"[green]{event.action}[/] {who}: {event.reason}")


# A day: anything longer is a typo, and a negative wait used to be taken as "don't wait".
_MAX_WAIT_S = 86_400.0
_wait = click.option(
    "--wait",
    type=click.FloatRange(0, _MAX_WAIT_S),
    default=15.0,
    show_default=True,
    help="Seconds to wait for the writer's answer (0: don't wait).",
)
_timeout = click.option(
    "--timeout",
    type=click.FloatRange(0, _MAX_WAIT_S, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds to wait for the routes topic to be read.",
)
_partitions_help = "Target partition; repeat to shard the tenant across several."
_reason = click.option("--reason", default="", help="Why; recorded with the route and event.")


@routes.command()
@click.argument("topic")
@click.argument("tenant")
@click.option(
    "--partition",
    "-p",
    "partitions",
    type=click.IntRange(min=0),
    multiple=True,
    required=True,
    help=_partitions_help,
)
@click.option(
    "--mode",
    type=click.Choice([m.value for m in RouteMode]),
    default=None,
    help="strict keeps order on moves; relaxed switches at once.",
)
@_reason
@_wait
@pass_settings
def pin(
    settings: Settings,
    topic: str,
    tenant: str,
    partitions: tuple[int, ...],
    mode: str | None,
    reason: str,
    wait: float,
) -> None:
    """Pin TENANT of TOPIC to the given partition(s)."""
    _send(
        settings,
        ControlCommand(
            ControlAction.PIN,
            topic,
            tenant,
            now_ms(),
            partitions,
            RouteMode(mode) if mode else None,
            reason,
            issuer(settings),
        ),
        wait,
    )


def _tenant_command(action: ControlAction, doc: str) -> None:
    """Registers ``routes <action> TOPIC TENANT``: commands that name a tenant and nothing else."""

    @routes.command(action.value, help=doc)
    @click.argument("topic")
    @click.argument("tenant")
    @_reason
    @_wait
    @pass_settings
    def command(settings: Settings, topic: str, tenant: str, reason: str, wait: float) -> None:
        _send(
            settings,
            ControlCommand(action, topic, tenant, now_ms(), reason=reason, issued_by=issuer(settings)),
            wait,
        )


_tenant_command(ControlAction.UNPIN, "Send TENANT of TOPIC back to default hashing.")
_tenant_command(ControlAction.FREEZE, "Stop automatic moves of TENANT (its current placement stays).")
_tenant_command(ControlAction.UNFREEZE, "Let the planner move TENANT again.")


_evacuate_partitions = click.option(
    "--partition",
    "-p",
    "partitions",
    type=click.IntRange(min=0),
    multiple=True,
    help="Partition to evacuate; repeat for several. None: stop evacuating TOPIC.",
)


def _evacuate(settings: Settings, topic: str, partitions: tuple[int, ...], reason: str, wait: float) -> None:
    _send(
        settings,
        ControlCommand(
            ControlAction.EVACUATE,
            topic,
            "",
            now_ms(),
            partitions,
            reason=reason,
            issued_by=issuer(settings),
        ),
        wait,
    )


@routes.command()
@click.argument("topic")
@_evacuate_partitions
@_reason
@_wait
@pass_settings
def evacuate(settings: Settings, topic: str, partitions: tuple[int, ...], reason: str, wait: float) -> None:
    """Move every tenant off partitions of TOPIC, and keep them off (the planner moves them,
    bounded per cycle)."""
    _evacuate(settings, topic, partitions, reason, wait)


# The command's name until "drain" came to mean only a strict move's ordering pause; kept so
# scripts that call it keep working.
@routes.command("drain", hidden=True)
@click.argument("topic")
@_evacuate_partitions
@_reason
@_wait
@pass_settings
def drain_alias(
    settings: Settings, topic: str, partitions: tuple[int, ...], reason: str, wait: float
) -> None:
    """Deprecated alias of ``routes evacuate``."""
    click.echo(
        "`routing-app routes drain` is deprecated: use `routing-app routes evacuate` (the same command)",
        err=True,
    )
    _evacuate(settings, topic, partitions, reason, wait)


def load_routes(settings: Settings, timeout: float) -> RouteCache:
    codec = RouteCodec(registry_client(settings.registry_config()), settings.routes_topic)
    cache = RouteCache(polled_client_settings(settings.kafka), codec, settings.routes_topic).start()
    if not cache.wait_ready(timeout):
        cache.stop()
        stats = cache.stats()
        if stats.end_offset_at_start < 0:
            why = f"Kafka at {settings.bootstrap} did not answer"
        else:
            why = (
                f"read {stats.position} of {stats.end_offset_at_start} records from Kafka "
                f"at {settings.bootstrap}"
            )
        failure = codec.values.last_failure
        problem = str(failure) if failure is not None else probe_registry(settings.registry_url)
        if problem is not None:
            why += f"; the schema registry at {settings.registry_url} does not answer ({problem})"
        err.print(f"[red]routes topic {settings.routes_topic!r} not read within {timeout}s[/]: {why}")
        sys.exit(2)
    return cache


@routes.command("list")
@click.option("--topic", default=None, help="Only this data topic.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@_timeout
@pass_settings
def list_routes(settings: Settings, topic: str | None, as_json: bool, timeout: float) -> None:
    """Every route on the routes topic (tenants not listed use default hashing)."""
    cache = load_routes(settings, timeout)
    try:
        found = sorted((r for r in cache if topic in (None, r.topic)), key=lambda r: r.key)
        if as_json:
            for route in found:
                click.echo(json.dumps(route.to_json()))
            return
        table = Table("topic", "tenant", "partitions", "mode", "status", "epoch", "reason")
        for r in found:
            table.add_row(
                r.topic, r.tenant, ",".join(map(str, r.partitions)), r.mode, r.status, str(r.epoch), r.reason
            )
        Console().print(table)
        stats = cache.stats()
        err.print(f"{len(found)} routes; {stats.undecodable} undecodable records skipped")
    finally:
        cache.stop()


@routes.command()
@click.argument("topic")
@click.argument("tenant")
@_timeout
@pass_settings
def show(settings: Settings, topic: str, tenant: str, timeout: float) -> None:
    """One tenant's route as JSON (exit 1 when it uses default hashing)."""
    cache = load_routes(settings, timeout)
    try:
        route: Route | None = cache.get(topic, tenant)
        click.echo(
            json.dumps(route.to_json() if route else {"topic": topic, "tenant": tenant, "route": None})
        )
        if route is None:
            sys.exit(1)
    finally:
        cache.stop()
