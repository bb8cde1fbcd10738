"""``routing-app routes pin | unpin | list | show``: operator access to the routing table."""

from __future__ import annotations

import getpass
import json
import sys

import click
from rich.console import Console
from rich.table import Table

from routing_app.client.cache import RouteCache
from routing_app.codec import registry_client
from routing_app.config import Settings
from routing_app.control import ControlAction, ControlClient, ControlCommand
from routing_app.control.client import now_ms
from routing_app.routes.codec import RouteCodec
from routing_app.routes.model import Route, RouteMode

pass_settings = click.make_pass_decorator(Settings)
err = Console(stderr=True)


@click.group()
def routes() -> None:
    """Read and change the routing table (changes go through the single writer)."""


def _send(settings: Settings, command: ControlCommand, wait: float) -> None:
    event = ControlClient(settings).send(command, wait_s=wait)
    if wait <= 0:
        err.print(f"sent command {command.command_id}")
        return
    if event is None:
        err.print(f"[red]no answer from a worker within {wait}s[/] (command {command.command_id}"
                  f" is queued on {settings.control_topic!r}; is a worker running?)")
        sys.exit(2)
    if not event.applied:
        err.print(f"[red]rejected[/]: {event.reason}")
        sys.exit(1)
    if command.action in (ControlAction.PIN, ControlAction.UNPIN):
        err.print(f"[green]{event.action}[/] {command.topic}/{command.tenant}: "
                  f"{list(event.from_partitions) or 'hashed'} -> "
                  f"{list(event.to_partitions) or 'hashed'} (epoch {event.to_epoch})")
    else:
        err.print(f"[green]{event.action}[/] {command.topic}/{command.tenant}: {event.reason}")


_wait = click.option("--wait", type=float, default=15.0, show_default=True,
                     help="Seconds to wait for the writer's answer (0: don't wait).")
_reason = click.option("--reason", default="", help="Why; recorded with the route and event.")


@routes.command()
@click.argument("topic")
@click.argument("tenant")
@click.option("--partition", "-p", "partitions", type=int, multiple=True, required=True,
              help="Target partition; repeat to shard the tenant across several.")
@click.option("--mode", type=click.Choice([m.value for m in RouteMode]), default=None,
              help="strict keeps order on moves; relaxed switches at once.")
@_reason
@_wait
@pass_settings
def pin(settings: Settings, topic: str, tenant: str, partitions: tuple[int, ...],
        mode: str | None, reason: str, wait: float) -> None:
    """Pin TENANT of TOPIC to the given partition(s)."""
    _send(settings, ControlCommand(ControlAction.PIN, topic, tenant, now_ms(), partitions,
                                   RouteMode(mode) if mode else None, reason, getpass.getuser()),
          wait)


def _tenant_command(action: ControlAction, doc: str) -> None:
    """Registers ``routes <action> TOPIC TENANT``: commands that name a tenant and nothing else."""

    @routes.command(action.value, help=doc)
    @click.argument("topic")
    @click.argument("tenant")
    @_reason
    @_wait
    @pass_settings
    def command(settings: Settings, topic: str, tenant: str, reason: str, wait: float) -> None:
        _send(settings, ControlCommand(action, topic, tenant, now_ms(), reason=reason,
                                       issued_by=getpass.getuser()), wait)


_tenant_command(ControlAction.UNPIN, "Send TENANT of TOPIC back to default hashing.")
_tenant_command(ControlAction.FREEZE, "Stop automatic moves of TENANT (its current placement stays).")
_tenant_command(ControlAction.UNFREEZE, "Let the planner move TENANT again.")


@routes.command()
@click.argument("topic")
@click.option("--partition", "-p", "partitions", type=int, multiple=True,
              help="Partition to drain; repeat for several. None: stop draining TOPIC.")
@_reason
@_wait
@pass_settings
def drain(settings: Settings, topic: str, partitions: tuple[int, ...], reason: str,
          wait: float) -> None:
    """Move tenants off partitions of TOPIC (planner moves them, bounded per cycle)."""
    _send(settings, ControlCommand(ControlAction.DRAIN, topic, "", now_ms(), partitions,
                                   reason=reason, issued_by=getpass.getuser()), wait)


def _load(settings: Settings, timeout: float) -> RouteCache:
    cache = RouteCache({"bootstrap.servers": settings.bootstrap},
                       RouteCodec(registry_client(settings.registry_url), settings.routes_topic),
                       settings.routes_topic).start()
    if not cache.wait_ready(timeout):
        err.print(f"[red]routes topic {settings.routes_topic!r} not read within {timeout}s[/]")
        sys.exit(2)
    return cache


@routes.command("list")
@click.option("--topic", default=None, help="Only this data topic.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--timeout", type=float, default=30.0, show_default=True)
@pass_settings
def list_routes(settings: Settings, topic: str | None, as_json: bool, timeout: float) -> None:
    """Every route on the routes topic (tenants not listed use default hashing)."""
    cache = _load(settings, timeout)
    try:
        found = sorted((r for r in cache if topic in (None, r.topic)), key=lambda r: r.key)
        if as_json:
            for route in found:
                click.echo(json.dumps(route.to_json()))
            return
        table = Table("topic", "tenant", "partitions", "mode", "status", "epoch", "reason")
        for r in found:
            table.add_row(r.topic, r.tenant, ",".join(map(str, r.partitions)), r.mode, r.status,
                          str(r.epoch), r.reason)
        Console().print(table)
        stats = cache.stats()
        err.print(f"{len(found)} routes; {stats.undecodable} undecodable records skipped")
    finally:
        cache.stop()


@routes.command()
@click.argument("topic")
@click.argument("tenant")
@click.option("--timeout", type=float, default=30.0, show_default=True)
@pass_settings
def show(settings: Settings, topic: str, tenant: str, timeout: float) -> None:
    """One tenant's route as JSON (exit 1 when it uses default hashing)."""
    cache = _load(settings, timeout)
    try:
        route: Route | None = cache.get(topic, tenant)
        click.echo(json.dumps(route.to_json() if route else
                              {"topic": topic, "tenant": tenant, "route": None}))
        if route is None:
            sys.exit(1)
    finally:
        cache.stop()
