"""``routing-app simulate``: run the planner over synthetic traffic and report how it balances.

No Kafka, no clock: simulated windows go as fast as the planner allows. With ``--json`` stdout
is exactly one JSON line of figures; otherwise a summary table and a timeline. Targets are shown
next to the figures, never asserted: the exit code is 0 whenever the simulation ran.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from routing_app.planner import Policy
from routing_app.simulate.run import SimConfig, SimResult, run_simulation
from routing_app.simulate.traffic import TrafficConfig

# figure -> (target, what it means)
TARGETS: dict[str, tuple[float, str]] = {
    "max_over_mean": (1.10, "steady-state max/mean partition load (median, second half)"),
    "moved_fraction_per_hour": (0.01, "tenants moved per hour / tenants (second half)"),
}
LOAD_FRACTION = 0.5  # default total rate: mean partition load at half the capacity


@click.command()
@click.option(
    "--zipf",
    type=click.FloatRange(min=0.0),
    default=1.4,
    show_default=True,
    help="Zipf exponent of the tenant sizes.",
)
@click.option("--tenants", type=click.IntRange(min=1), default=10_000, show_default=True)
@click.option("--partitions", type=click.IntRange(min=1), default=50, show_default=True)
@click.option(
    "--hours",
    type=click.FloatRange(min=0.0, min_open=True),
    default=2.0,
    show_default=True,
    help="Simulated time.",
)
@click.option(
    "--window-s",
    type=click.FloatRange(min=0.0, min_open=True),
    default=10.0,
    show_default=True,
    help="Simulated seconds per planning window.",
)
@click.option(
    "--total-rate",
    type=click.FloatRange(min=0.0, min_open=True),
    default=None,
    help="Records/s over all tenants [default: mean partition load = 50% of capacity].",
)
@click.option(
    "--capacity",
    type=click.FloatRange(min=0.0, min_open=True),
    default=None,
    help="Records/s one partition's consumer handles [default: the policy's, 5000].",
)
@click.option(
    "--flash/--no-flash",
    default=True,
    show_default=True,
    help="Every 30 min a tenant (Zipf rank 10-1000) sends x20 for 5 min.",
)
@click.option(
    "--diurnal/--no-diurnal",
    default=True,
    show_default=True,
    help="Total rate x (1 + 0.3 sin(2 pi t / period)).",
)
@click.option(
    "--diurnal-period-h",
    type=click.FloatRange(min=0.0, min_open=True),
    default=None,
    help="Period of the wave [default: the simulated time, one 'day'].",
)
@click.option(
    "--churn",
    type=click.FloatRange(min=0.0),
    default=0.02,
    show_default=True,
    help="Fraction of tenants replaced per hour (one leaves, a new one arrives).",
)
@click.option(
    "--noise",
    type=click.FloatRange(min=0.0),
    default=0.02,
    show_default=True,
    help="Relative burstiness per window, on top of Poisson counting noise.",
)
@click.option(
    "--keyless-fraction",
    type=click.FloatRange(min=0.0, max=1.0),
    default=0.3,
    show_default=True,
    help="Share of tenants that send key-only records (key=tenant): one ordered "
    "stream each, which a strict route never splits, so the planner isolates "
    "such a tenant instead of sharding it.",
)
@click.option(
    "--keys-max",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="Every other tenant spreads its records over secondary keys (one ordered "
    "stream each): a key count drawn log-uniformly from 1 to this.",
)
@click.option(
    "--key-zipf",
    type=click.FloatRange(min=0.0),
    default=1.0,
    show_default=True,
    help="Skew over a tenant's keys: Zipf with an exponent drawn uniformly from 0 "
    "(even keys) to this. A strict tenant gets at most rate / heaviest key shards "
    "once that key is bigger than a shard.",
)
@click.option(
    "--expand-at",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    help="Grow the topic at this fraction of the run (routing-app topics expand): unrouted "
    "tenants keep hashing by the old count and the planner fills the new partitions.",
)
@click.option(
    "--to",
    "expand_to",
    type=click.IntRange(min=2),
    default=None,
    help="The partition count --expand-at grows to.",
)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "--policy",
    "policy_text",
    default="",
    metavar="NAME=VALUE,...",
    help="Planner policy overrides, as the workers' planner_policy setting.",
)
@click.option(
    "--series",
    is_flag=True,
    help="Add every window's max/mean (planner, hash, PKG) and the flash crowds' "
    'periods to the JSON ("series").',
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line of figures only.")
def simulate(
    zipf: float,
    tenants: int,
    partitions: int,
    hours: float,
    window_s: float,
    total_rate: float | None,
    capacity: float | None,
    flash: bool,
    diurnal: bool,
    diurnal_period_h: float | None,
    churn: float,
    noise: float,
    keyless_fraction: float,
    keys_max: int,
    key_zipf: float,
    expand_at: float | None,
    expand_to: int | None,
    seed: int,
    policy_text: str,
    series: bool,
    as_json: bool,
) -> None:
    """Run the planner over synthetic Zipf traffic; compare with hashing and two-choices (PKG).

    Every tenant has a key distribution: key-only records (one ordered stream) for
    --keyless-fraction of them, else secondary keys (--keys-max, --key-zipf). A strict tenant
    gets at most rate / heaviest stream shards once that stream is bigger than a shard; the
    figures count the elephants that two shards would not spread (unsplittable_*) and the
    max/mean their heaviest stream alone forces (stream_floor_max_over_mean)."""
    policy = Policy()
    if policy_text:
        from routing_app.app.policy_text import policy_from_text
        from routing_app.config import ConfigError

        try:
            policy = policy_from_text(policy_text)
        except ConfigError as exc:
            raise click.BadParameter(str(exc), param_hint="--policy") from exc
    if capacity is not None:
        policy = replace(policy, partition_capacity=capacity)
    if (expand_at is None) != (expand_to is None):
        raise click.UsageError("--expand-at and --to go together")
    if expand_to is not None and expand_to <= partitions:
        raise click.BadParameter(f"must be more than --partitions ({partitions})", param_hint="--to")
    rate = total_rate if total_rate is not None else (LOAD_FRACTION * policy.partition_capacity * partitions)
    config = SimConfig(
        traffic=TrafficConfig(
            tenants=tenants,
            zipf=zipf,
            total_rate=rate,
            noise=noise,
            flash=flash,
            diurnal=diurnal,
            diurnal_period_s=(diurnal_period_h or hours) * 3600,
            churn_per_hour=churn,
            keyless_fraction=keyless_fraction,
            keys_max=keys_max,
            key_zipf=key_zipf,
            seed=seed,
        ),
        partitions=partitions,
        hours=hours,
        window_s=window_s,
        policy=policy,
        expand_at=expand_at,
        expand_to=expand_to,
    )
    err = Console(stderr=True)
    if err.is_terminal:
        with Progress(
            TextColumn("simulating"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("windows"),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as progress:
            task = progress.add_task("simulate", total=config.windows)
            result = run_simulation(config, lambda done, _: progress.update(task, completed=done))
    else:
        result = run_simulation(config)
    figures = report(result)
    if series:
        figures["series"] = result.series()
    if as_json:
        click.echo(json.dumps(figures, separators=(",", ":")))
    else:
        _print_tables(Console(), result, figures)


def report(result: SimResult) -> dict[str, Any]:
    """The summary plus targets and whether they were met (the --json line)."""
    figures = result.summary()
    figures["targets"] = {name: goal for name, (goal, _) in TARGETS.items()}
    figures["targets_met"] = {name: figures[name] <= goal for name, (goal, _) in TARGETS.items()}
    figures["timeline"] = result.timeline()
    expansion = result.expansion()
    if expansion is not None:
        figures["expansion"] = expansion
    figures["policy"] = asdict(result.config.policy)
    return figures


def _print_tables(console: Console, result: SimResult, figures: dict[str, Any]) -> None:
    cfg = result.config
    title = (
        f"simulate: {cfg.traffic.tenants:,} tenants (Zipf {cfg.traffic.zipf:g}) on "
        f"{cfg.partitions:,} partitions, {cfg.hours:g} h in {cfg.windows:,} windows of "
        f"{cfg.window_s:g} s"
    )
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("planner", justify="right")
    table.add_column("murmur2 hash", justify="right")
    table.add_column("two choices (PKG)", justify="right")
    table.add_column("target")
    goal, _ = TARGETS["max_over_mean"]
    table.add_row(
        "max / mean partition load",
        f"{figures['max_over_mean']:.3f}",
        f"{figures['hash_max_over_mean']:.3f}",
        f"{figures['pkg_max_over_mean']:.3f}",
        _verdict(figures["max_over_mean"], goal),
    )
    table.add_row("  95th percentile", f"{figures['max_over_mean_p95']:.3f}", "", "", "")
    goal, _ = TARGETS["moved_fraction_per_hour"]
    table.add_row(
        "tenants moved per hour",
        f"{figures['moved_fraction_per_hour']:.2%}",
        "0",
        "0",
        _verdict(figures["moved_fraction_per_hour"], goal, percent=True),
    )
    table.add_row(
        "sharded tenants (most shards)",
        f"{figures['sharded_tenants']:,} ({figures['max_shard_count']:,})",
        "",
        "",
        "",
    )
    table.add_row("routed tenants", f"{figures['routed_tenants']:,}", "0", "0", "")
    table.add_row(
        "elephants: unsplittable (isolated / times)",
        f"{figures['elephants']:,}: {figures['unsplittable_elephants']:,} "
        f"({figures['unsplittable_isolated_tenants']:,} / "
        f"{figures['unsplittable_isolations']:,})",
        "",
        "",
        "",
    )
    table.add_row(
        "heaviest stream / mean (floor)", f"{figures['stream_floor_max_over_mean']:.3f}", "", "", ""
    )
    table.add_row(
        "changes by action",
        ", ".join(f"{k} {v:,}" for k, v in figures["actions"].items()) or "none",
        "",
        "",
        "",
    )
    table.add_row(
        "plan() time mean / max",
        f"{figures['plan_ms_mean']:.1f} / {figures['plan_ms_max']:.1f} ms",
        "",
        "",
        "",
    )
    table.add_row("wall time", f"{figures['seconds']:.1f} s", "", "", "")
    console.print(table)

    timeline = Table(title="over simulated time (median max/mean per slice)")
    for column in ("minute", "planner", "hash", "PKG", "moves", "sharded", "routed"):
        timeline.add_column(column, justify="right")
    for row in figures["timeline"]:
        timeline.add_row(
            f"{row['minute']:g}",
            f"{row['max_over_mean']:.3f}",
            f"{row['hash_max_over_mean']:.2f}",
            f"{row['pkg_max_over_mean']:.2f}",
            f"{row['moves']:,}",
            f"{row['sharded']:,}",
            f"{row['routed']:,}",
        )
    console.print(timeline)
    expansion = figures.get("expansion")
    if expansion is not None:
        trigger = 1 + cfg.policy.tolerance
        minutes = expansion["minutes_to_trigger"]
        console.print(
            f"Expansion at minute {expansion['at_s'] / 60:g}: {expansion['from']} -> {expansion['to']} "
            f"partitions. max/mean {expansion['max_over_mean_before']} before, "
            f"{expansion['max_over_mean_at_growth']} at the growth (unrouted tenants hash by "
            f"{expansion['from']}), {expansion['max_over_mean_end']} at the end; back under "
            f"{trigger:g} after {'never' if minutes is None else f'{minutes:g} min'}; "
            f"{expansion['moves_after']:,} moves after it, {expansion['fill_moves']:,} of them fills. "
            f"Plain Kafka (every key rehashed by {expansion['to']}, order broken): "
            f"{expansion['hash_max_over_mean_end']}."
        )
    console.print(
        "Steady state = the second half of the run (after the start-up moves, still "
        "with flashes, churn and the diurnal wave)."
    )
    console.print(
        f"Keys: {cfg.traffic.keyless_fraction:.0%} of tenants send key-only records; the "
        f"others 1-{cfg.traffic.keys_max:,} keys, Zipf 0-{cfg.traffic.key_zipf:g}. Elephants: "
        "above the shard level in some window; unsplittable: their heaviest stream "
        "exceeded a shard's unit and half their rate (isolated, not sharded)."
    )


def _verdict(value: float, goal: float, percent: bool = False) -> str:
    shown = f"{goal:.0%}" if percent else f"{goal:g}"
    return f"{'[green]met' if value <= goal else '[red]missed'}[/] (<= {shown})"
