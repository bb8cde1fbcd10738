"""`routing-app stack up | down | status`."""

from __future__ import annotations

import click
from rich.console import Console

from routing_app.config import Settings
from routing_app.stack import LocalStack, StackError, StackInfo

# Same object lookup as routing_app.cli.pass_settings; defined here so that importing this
# module first (before routing_app.cli) cannot hit the cli <-> commands import cycle.
pass_settings = click.make_pass_decorator(Settings)

console = Console()


@click.group("stack")
def stack() -> None:
    """The local Kafka (KRaft) + Apicurio schema registry used by the demo and the tests."""


@stack.command("up")
@click.option("--brokers", type=click.IntRange(1), default=None,
              help="Kafka nodes (broker + controller each): 1, or 3 (or 5) for a replicated "
                   "cluster. Default: as this state folder last ran (1 when new).")
@pass_settings
def up(settings: Settings, brokers: int | None) -> None:
    """Download (first run only), start and wait for Kafka and the registry."""
    with console.status("Starting the local stack", spinner="dots") as spinner:
        try:
            info = LocalStack(settings, progress=lambda msg: spinner.update(msg),
                              brokers=brokers).up()
        except StackError as exc:
            raise click.ClickException(str(exc)) from exc
    _print_info(info)


def _row(label: str, value: object) -> None:
    # soft_wrap: paths and URLs stay on one line so they can be copied.
    console.print(f"  {label:<18} {value}", soft_wrap=True, highlight=False)


def _print_info(info: StackInfo) -> None:
    if info.external:
        console.print("[bold]Using the external cluster[/] (nothing started):")
    elif info.started:
        timings = ", ".join(f"{name} in {secs:.1f} s" for name, secs in info.startup_s.items())
        console.print(f"[green]Started[/] {', '.join(info.started)} ({timings}).")
    else:
        console.print("[green]Already running.[/]")
    _row("Kafka bootstrap", info.bootstrap)
    _row("Schema registry", info.registry_url)
    if info.external:
        return
    if len(info.brokers) > 1:
        for broker in info.brokers:
            _row(f"Kafka node {broker.node_id}",
                 f"{broker.address}, pid {broker.pid}, log {broker.log}")
    else:
        _row("Kafka", f"pid {info.kafka_pid}, log {info.kafka_log}")
    if info.registry_pid is None:
        _row("Registry", "external (ROUTING_SCHEMA_REGISTRY_URL), not started")
    else:
        _row("Registry", f"pid {info.registry_pid}, log {info.registry_log}")
        _row("Registry storage", info.registry_storage or "")


@stack.command("down")
@pass_settings
def down(settings: Settings) -> None:
    """Stop the local Kafka and registry (their data is kept)."""
    if settings.uses_external_cluster:
        console.print("Using an external cluster (ROUTING_BOOTSTRAP_SERVERS): nothing to stop.")
        return
    with console.status("Stopping the local stack", spinner="dots"):
        try:
            stopped = LocalStack(settings).down()
        except StackError as exc:
            raise click.ClickException(str(exc)) from exc
    if stopped:
        console.print(f"Stopped {', '.join(stopped)}. Data kept in {settings.state_dir}.")
    else:
        console.print("Nothing was running.")


@stack.command("status")
@pass_settings
def status(settings: Settings) -> None:
    """Show whether Kafka and the registry run and answer; exit 1 if not."""
    report = LocalStack(settings).status()
    where = f" (state in {report['state_dir']})" if "state_dir" in report else ""
    console.print(f"[bold]{report['mode']} stack[/]{where}", soft_wrap=True)
    for name in ("kafka", "registry"):
        part = report[name]
        nodes = part.get("nodes", ())
        up_nodes = sum(1 for node in nodes if node["answering"])
        if part["answering"]:
            state = "[green]up[/]"
        elif nodes and up_nodes:
            state = f"[yellow]degraded: {up_nodes} of {len(nodes)} nodes answer[/]"
        elif part.get("pid"):
            state = "[yellow]running but not answering[/]"
        else:
            state = "[red]down[/]"
        pid = f" (pid {part['pid']})" if part.get("pid") and not nodes else ""
        if part.get("external"):
            pid = " (external)"
        console.print(f"  {name:<9} {state}  {part['address']}{pid}", soft_wrap=True,
                      highlight=False)
        for node in nodes:
            node_state = ("[green]up[/]" if node["answering"] else
                          "[yellow]running but not answering[/]" if node["pid"] else "[red]down[/]")
            node_pid = f" (pid {node['pid']})" if node["pid"] else ""
            console.print(f"  {'':<9} node {node['id']} {node_state}  {node['address']}{node_pid}"
                          f"  log: {node['log']}", soft_wrap=True, highlight=False)
        for key in ("compatibility", "storage", "log"):
            if part.get(key):
                console.print(f"  {'':<9} {key}: {part[key]}", soft_wrap=True, highlight=False)
    if not report["running"]:
        raise SystemExit(1)
