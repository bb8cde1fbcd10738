"""``routing-app audit replay | at | tenant | verify``: the routing history, read back from Kafka."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console

from routing_app.audit.consistency import VerifyReport, verify
from routing_app.audit.reader import AuditInput, AuditReadError, read_history
from routing_app.audit.replay import Placement, table_at, timeline
from routing_app.audit.times import TIME_FORMATS, as_ago, format_time, is_relative, iso_time, parse_time
from routing_app.cli.audit_output import (
    DISCREPANCY_COLUMNS,
    DISCREPANCY_CSV,
    HISTORY_COLUMNS,
    PLACEMENT_COLUMNS,
    PLACEMENT_CSV,
    REPLAY_COLUMNS,
    STEP_CSV,
    emit,
    partitions_text,
)
from routing_app.cli.context import pass_settings
from routing_app.config import Settings

err = Console(stderr=True, soft_wrap=True)


class TimeParam(click.ParamType):
    name = "time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_time(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


TIME = TimeParam()
_TIME_OPTIONS = ("--since", "--until")
_VALUE_OPTIONS = ("--topic", "--tenant", "--timeout")


class _TimeArgsCommand(click.Command):
    """Reads "-2h" as a time, where click would see options (-2 and -h: help)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_time_argument = any(isinstance(p, click.Argument) and p.type is TIME for p in self.params)
        rewritten: list[str] = []
        after = ""
        for arg in args:
            if is_relative(arg) and (
                after in _TIME_OPTIONS or (takes_time_argument and after not in _VALUE_OPTIONS)
            ):
                arg = as_ago(arg)
            rewritten.append(arg)
            after = arg if arg.startswith("--") else ""
        return super().parse_args(ctx, rewritten)


@click.group()
def audit() -> None:
    """Replay and check the routing history: the routes topic against the events topic."""


def _formats(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option("--csv", "as_csv", is_flag=True, help="CSV on stdout.")(command)
    command = click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")(command)
    return click.option(
        "--timeout",
        type=float,
        default=30.0,
        show_default=True,
        help="Give up when a topic delivers nothing for this many seconds.",
    )(command)


def _fmt(as_json: bool, as_csv: bool) -> str:
    if as_json and as_csv:
        raise click.UsageError("--json and --csv exclude each other")
    return "json" if as_json else "csv" if as_csv else "table"


def _read(settings: Settings, timeout: float) -> AuditInput:
    try:
        found = read_history(settings, console=err, stall_timeout_s=timeout)
    except AuditReadError as exc:
        err.print(f"[red]error[/]: {exc}")
        sys.exit(2)
    if found.undecodable:
        err.print(
            f"[yellow]warning[/]: {found.undecodable_routes} undecodable record(s) on "
            f"{settings.routes_topic!r} and {found.undecodable_events} on "
            f"{settings.events_topic!r} skipped (audit verify lists them)"
        )
    return found


@audit.command(cls=_TimeArgsCommand)
@click.option("--topic", default=None, help="Only this data topic.")
@click.option("--tenant", default=None, help="Only this tenant.")
@click.option("--since", type=TIME, default=None, help=f"From this time ({TIME_FORMATS}).")
@click.option("--until", type=TIME, default=None, help="Up to this time (same forms).")
@_formats
@pass_settings
def replay(
    settings: Settings,
    topic: str | None,
    tenant: str | None,
    since: int | None,
    until: int | None,
    as_json: bool,
    as_csv: bool,
    timeout: float,
) -> None:
    """The timeline of every decision, replayed from both topics' beginnings.

    The route column names the offset of the record the decision wrote on the routes topic, or
    "gone" where compaction has removed it since.
    """
    fmt = _fmt(as_json, as_csv)
    found = _read(settings, timeout)
    steps = timeline(found.events, found.routes, topic=topic, tenant=tenant, since_ms=since, until_ms=until)
    document = {
        "routes_topic": settings.routes_topic,
        "events_topic": settings.events_topic,
        "filters": {"topic": topic, "tenant": tenant, "since_ms": since, "until_ms": until},
        "events_read": len(found.events),
        "route_records_read": len(found.routes.records),
        "undecodable": [vars(u) for u in found.undecodable],
        "timeline": [s.to_json() for s in steps],
    }
    emit(fmt, document, steps, REPLAY_COLUMNS, STEP_CSV)
    if fmt == "table":
        err.print(
            f"{len(steps)} of {len(found.events)} events shown; "
            f"{len(found.routes.records)} records on {settings.routes_topic!r}"
        )


def _never_routed(topic: str | None, tenant: str) -> Placement:
    return Placement(
        topic=topic or "*",
        tenant=tenant,
        partitions=None,
        epoch=None,
        status="",
        mode="",
        since_ms=0,
        action="",
        reason="no route at that time: default hashing",
        event_offset=-1,
    )


@audit.command(cls=_TimeArgsCommand)
@click.argument("when", metavar="TIME", type=TIME)
@click.option("--topic", default=None, help="Only this data topic.")
@click.option("--tenant", default=None, help="Only this tenant; shows it even where it used default hashing.")
@_formats
@pass_settings
def at(
    settings: Settings,
    when: int,
    topic: str | None,
    tenant: str | None,
    as_json: bool,
    as_csv: bool,
    timeout: float,
) -> None:
    """The routing table as it was at TIME, each route with the decision that made it.

    TIME: ISO-8601 (local time if no zone), HH:MM[:SS] today, epoch ms, -15m / -2h / -1d, now.
    """
    fmt = _fmt(as_json, as_csv)
    found = _read(settings, timeout)
    table = table_at(found.events, when, include_hashed=tenant is not None)
    rows = sorted(
        (p for p in table.values() if topic in (None, p.topic) and tenant in (None, p.tenant)),
        key=lambda p: p.key,
    )
    if tenant is not None and not rows:
        rows = [_never_routed(topic, tenant)]
    document = {"at_ms": when, "at": iso_time(when), "routes": [p.to_json() for p in rows]}
    emit(fmt, document, rows, PLACEMENT_COLUMNS, PLACEMENT_CSV, title=f"routing table at {format_time(when)}")
    if fmt == "table":
        routed = sum(1 for p in rows if p.partitions is not None)
        err.print(f"{routed} routed tenant(s) at {format_time(when)}; any other tenant used default hashing")


@audit.command()
@click.argument("tenant")
@click.option("--topic", default=None, help="Only this data topic.")
@_formats
@pass_settings
def tenant(
    settings: Settings, tenant: str, topic: str | None, as_json: bool, as_csv: bool, timeout: float
) -> None:
    """One tenant's history: placements, epochs, reasons, drains and their pauses (exit 1 when
    it has none)."""
    fmt = _fmt(as_json, as_csv)
    found = _read(settings, timeout)
    steps = timeline(found.events, found.routes, topic=topic, tenant=tenant)
    now_ms = int(time.time() * 1000)
    current = sorted(
        (
            p
            for p in table_at(found.events, now_ms, include_hashed=True).values()
            if p.tenant == tenant and topic in (None, p.topic)
        ),
        key=lambda p: p.key,
    )
    document = {
        "tenant": tenant,
        "topic": topic,
        "history": [s.to_json() for s in steps],
        "current": [p.to_json() for p in current],
    }
    if steps or fmt != "table":
        emit(fmt, document, steps, HISTORY_COLUMNS, STEP_CSV, title=f"history of tenant {tenant!r}")
    linked = {s.route_offset for s in steps if s.route_offset is not None}
    unexplained = [
        r
        for r in found.routes.records
        if r.tenant == tenant and topic in (None, r.topic) and r.offset not in linked
    ]
    if unexplained:
        err.print(
            f"[yellow]warning[/]: {len(unexplained)} record(s) of tenant {tenant!r} on "
            f"{settings.routes_topic!r} match no event (offsets "
            f"{', '.join(str(r.offset) for r in unexplained[:10])}); run `audit verify`"
        )
    if not steps:
        err.print(
            f"no events for tenant {tenant!r}"
            + (f" on {topic!r}" if topic else "")
            + ": by the events topic, it has always used default hashing"
        )
        sys.exit(1)
    if fmt == "table":
        for p in current:
            err.print(
                f"now: {p.key} on {partitions_text(p.partitions)}"
                + (f" (epoch {p.epoch}, {p.status})" if p.partitions is not None else "")
                + f" since {format_time(p.since_ms)}: {p.reason}"
            )


@audit.command("verify")
@click.option(
    "--settle",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    help="On discrepancies, read again after this many seconds and report what is left "
    "(a change in flight shows on one topic before the other). 0: read once.",
)
@_formats
@pass_settings
def verify_command(settings: Settings, settle: float, as_json: bool, as_csv: bool, timeout: float) -> None:
    """Check that the routes topic is the replay of the events topic (exit 1 on discrepancies).

    Every route record still on the routes topic has its event and every route-changing event its
    record (unless compaction removed it); epochs go up per key (a drain's completion keeps its
    epoch); and each key's last record equals the replay of its events.
    """
    fmt = _fmt(as_json, as_csv)
    report = _verify_once(settings, timeout)
    if not report.ok and settle > 0:
        time.sleep(settle)
        report = _verify_once(settings, timeout)
    if fmt != "table" or not report.ok:
        emit(
            fmt,
            report.to_json(),
            report.discrepancies,
            DISCREPANCY_COLUMNS,
            DISCREPANCY_CSV,
            title=f"{len(report.discrepancies)} discrepancies",
        )
    summary = (
        f"{report.keys} keys, {report.events} events ({report.route_changes} route changes), "
        f"{report.route_records} route records ({report.linked_records} linked to their event)"
        + ("; compaction has removed older route records" if report.compacted else "")
    )
    if report.ok:
        if fmt == "table":
            Console(soft_wrap=True).print(
                f"[green]OK[/]: routes topic {settings.routes_topic!r} is the replay of events "
                f"topic {settings.events_topic!r}: {summary}"
            )
        return
    keys = sorted({d.key for d in report.discrepancies})
    named = ", ".join(keys[:10]) + (f" and {len(keys) - 10} more keys" if len(keys) > 10 else "")
    err.print(f"[red]FAILED[/]: {len(report.discrepancies)} discrepancies ({named}); checked {summary}")
    sys.exit(1)


def _verify_once(settings: Settings, timeout: float) -> VerifyReport:
    found = _read(settings, timeout)
    return verify(found.routes, found.events, found.undecodable)
