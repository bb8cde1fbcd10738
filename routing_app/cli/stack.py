"""`routing-app stack up | down | status | acls`."""

from __future__ import annotations

import click
from confluent_kafka import KafkaException
from rich.console import Console
from rich.table import Table

from routing_app.cli.context import pass_settings
from routing_app.config import Settings
from routing_app.stack import LocalStack, StackError, StackInfo, security

console = Console()


@click.group("stack")
def stack() -> None:
    """The local Kafka (KRaft) + Apicurio schema registry used by the demo and the tests."""


@stack.command("up")
@click.option(
    "--brokers",
    type=click.IntRange(1),
    default=None,
    help="Kafka nodes (broker + controller each): 1, or 3 (or 5) for a replicated "
    "cluster. Default: as this state folder last ran (1 when new).",
)
@click.option(
    "--secure/--no-secure",
    default=None,
    help="Kafka with SASL/SCRAM-SHA-512 logins and ACLs enforced (users admin, "
    "routing-worker, routing-operator, routing-producer; passwords in the state "
    "folder), or without (--no-secure). Each keeps its own data; switching needs "
    "`stack down` first. Default: as this state folder last ran (open when new).",
)
@pass_settings
def up(settings: Settings, brokers: int | None, secure: bool | None) -> None:
    """Download (first run only), start and wait for Kafka and the registry."""
    with console.status("Starting the local stack", spinner="dots") as spinner:
        try:
            info = LocalStack(
                settings, progress=lambda msg: spinner.update(msg), brokers=brokers, secure=secure
            ).up()
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
            _row(f"Kafka node {broker.node_id}", f"{broker.address}, pid {broker.pid}, log {broker.log}")
    else:
        _row("Kafka", f"pid {info.kafka_pid}, log {info.kafka_log}")
    if info.registry_pid is None:
        _row("Registry", "external (ROUTING_SCHEMA_REGISTRY_URL), not started")
    else:
        _row("Registry", f"pid {info.registry_pid}, log {info.registry_log}")
        _row("Registry storage", info.registry_storage or "")
    if info.secure:
        _print_security(info)


def _print_security(info: StackInfo) -> None:
    _row(
        "Security",
        f"{security.SECURITY_PROTOCOL} + {security.SCRAM_MECHANISM} logins, ACLs "
        f"enforced ({info.acls_applied} bindings applied); the registry is open "
        "(127.0.0.1 only)",
    )
    _row("Credentials", f"{info.credentials_file} (mode 0600)")
    console.print(
        "  Run as a principal with its env file (ROUTING_SECURITY_PROTOCOL, "
        "ROUTING_SASL_MECHANISM, ROUTING_SASL_USERNAME, ROUTING_SASL_PASSWORD):",
        soft_wrap=True,
        highlight=False,
    )
    for user, path in sorted(info.env_files.items()):
        role = {
            security.ADMIN: "super user: topics ensure, ACLs",
            security.WORKER: "faust -A routing_app.app worker",
            security.OPERATOR: "routes pin|unpin|..., audit",
            security.PRODUCER: "RoutingProducer",
        }.get(user, "")
        console.print(
            f"    set -a; . {path}; set +a   # {security.principal(user)}: {role}",
            soft_wrap=True,
            highlight=False,
        )


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
        console.print(f"  {name:<9} {state}  {part['address']}{pid}", soft_wrap=True, highlight=False)
        for node in nodes:
            node_state = (
                "[green]up[/]"
                if node["answering"]
                else "[yellow]running but not answering[/]"
                if node["pid"]
                else "[red]down[/]"
            )
            node_pid = f" (pid {node['pid']})" if node["pid"] else ""
            console.print(
                f"  {'':<9} node {node['id']} {node_state}  {node['address']}{node_pid}  log: {node['log']}",
                soft_wrap=True,
                highlight=False,
            )
        if part.get("secure"):
            console.print(
                f"  {'':<9} security: SASL/SCRAM logins and ACLs; credentials: {part.get('credentials')}",
                soft_wrap=True,
                highlight=False,
            )
        for key in ("compatibility", "storage", "log"):
            if part.get(key):
                console.print(f"  {'':<9} {key}: {part[key]}", soft_wrap=True, highlight=False)
    if not report["running"]:
        raise SystemExit(1)


@stack.command("acls")
@click.option(
    "--worker", default=security.principal(security.WORKER), show_default=True, help="The workers' principal."
)
@click.option(
    "--operator",
    default=security.principal(security.OPERATOR),
    show_default=True,
    help="The operators' principal (the CLI's routes and audit commands).",
)
@click.option(
    "--producer",
    default=security.principal(security.PRODUCER),
    show_default=True,
    help="The RoutingProducers' principal.",
)
@click.option(
    "--data-topics",
    default=None,
    metavar="NAME",
    help="The one data topic producers write (default: every topic, *).",
)
@click.option(
    "--data-prefix",
    default=None,
    metavar="PREFIX",
    help="Data topics are those whose names start with PREFIX.",
)
@click.option(
    "--apply",
    "apply_",
    is_flag=True,
    help="Create the bindings on the cluster of the current settings, logged in as "
    "they say (a super user or one with ALTER on the cluster).",
)
@pass_settings
def acls(
    settings: Settings,
    worker: str,
    operator: str,
    producer: str,
    data_topics: str | None,
    data_prefix: str | None,
    apply_: bool,
) -> None:
    """The ACLs the worker, operators and producers need (least privilege), for these
    settings' topics and app id: printed, or created with --apply."""
    from routing_app.topics.acls import AclSetError, apply_acls, routing_acls

    if data_topics is not None and data_prefix is not None:
        raise click.UsageError("give --data-topics or --data-prefix, not both")
    try:
        bindings = routing_acls(
            settings,
            worker=worker,
            operator=operator,
            producer=producer,
            data_topics=data_prefix or data_topics or "*",
            data_prefixed=data_prefix is not None,
        )
    except AclSetError as exc:
        raise click.UsageError(str(exc)) from exc
    table = Table()
    for column in ("principal", "permission", "operation", "resource", "name", "pattern"):
        # Folded, never cut: principals and topic names must stay whole to be copied.
        table.add_column(column, overflow="fold")
    for b in bindings:
        table.add_row(
            b.principal,
            _enum_name(b.permission_type),
            _enum_name(b.operation),
            "cluster" if _enum_name(b.restype) == "BROKER" else _enum_name(b.restype).lower(),
            b.name,
            _enum_name(b.resource_pattern_type).lower(),
        )
    console.print(table)
    if not apply_:
        console.print(
            f"{len(bindings)} bindings; --apply creates them on {settings.bootstrap} "
            f"as {settings.principal or 'an anonymous client'}.",
            highlight=False,
        )
        return
    try:
        count = apply_acls(settings.kafka, bindings)
    except KafkaException as exc:
        raise click.ClickException(str(exc)) from exc
    console.print(
        f"[green]Created[/] {count} bindings on {settings.bootstrap} (existing ones are kept as they were).",
        highlight=False,
    )


def _enum_name(value: object) -> str:
    return str(getattr(value, "name", value))
