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
@pass_settings
def up(settings: Settings) -> None:
    """Download (first run only), start and wait for Kafka and the registry."""
    with console.status("Starting the local stack", spinner="dots") as spinner:
        try:
            info = LocalStack(settings, progress=lambda msg: spinner.update(msg)).up()
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
        if part["answering"]:
            state = "[green]up[/]"
        elif part.get("pid"):
            state = "[yellow]running but not answering[/]"
        else:
            state = "[red]down[/]"
        pid = f" (pid {part['pid']})" if part.get("pid") else ""
        if part.get("external"):
            pid = " (external)"
        console.print(f"  {name:<9} {state}  {part['address']}{pid}", soft_wrap=True,
                      highlight=False)
        for key in ("compatibility", "storage", "log"):
            if part.get(key):
                console.print(f"  {'':<9} {key}: {part[key]}", soft_wrap=True, highlight=False)
    if not report["running"]:
        raise SystemExit(1)
