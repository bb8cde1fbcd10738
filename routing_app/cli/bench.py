"""``routing-app bench producer | rebuild | propagation | ... [--json]``, ``bench report``.

Progress and a summary go to stderr; with ``--json`` stdout ends with exactly one JSON line of
figures. Targets are shown next to the figures, never asserted: the exit code is 0 whenever
the benchmark ran.
"""

from __future__ import annotations

import contextlib
import json
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from routing_app.bench.report_runs import BENCHES
from routing_app.cli.context import pass_settings
from routing_app.config import Settings

err = Console(stderr=True)

# (figure, comparison, target, applies) -> shown in the summary
Target = tuple[str, str, float, Callable[[dict[str, Any]], bool]]


def _always(_: dict[str, Any]) -> bool:
    return True


class RichReporter:
    def __init__(self, console: Console) -> None:
        self.console = console

    def note(self, message: str) -> None:
        self.console.print(message)

    @contextlib.contextmanager
    def progress(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
        ) as progress:
            task = progress.add_task(description, total=total)
            yield lambda n: progress.advance(task, n)


def _finish(title: str, result: dict[str, Any], as_json: bool, targets: list[Target]) -> None:
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target")
    goals = {name: (op, goal, applies) for name, op, goal, applies in targets}
    for name, value in result.items():
        if isinstance(value, dict | list):
            continue
        shown = f"{value:,}" if isinstance(value, int | float) and not isinstance(value, bool) else str(value)
        target = ""
        if name in goals:
            op, goal, applies = goals[name]
            if applies(result):
                met = value >= goal if op == ">=" else value <= goal
                target = f"{'[green]met' if met else '[red]missed'}[/] ({op} {goal:g})"
            else:
                target = f"({op} {goal:g} at full size)"
        table.add_row(name, shown, target)
    err.print(table)
    if as_json:
        click.echo(json.dumps(result, separators=(",", ":")))


_as_json = click.option(
    "--json", "as_json", is_flag=True, help="End stdout with one JSON line of the figures."
)


@click.group()
def bench() -> None:
    """Benchmarks against the configured broker and registry (scratch topics, deleted after)."""


@bench.command()
@click.option("--records", type=click.IntRange(1), default=200_000, show_default=True)
@click.option("--rounds", type=click.IntRange(1), default=3, show_default=True)
@click.option("--tenants", type=click.IntRange(1), default=10_000, show_default=True)
@click.option("--partitions", type=click.IntRange(1), default=12, show_default=True)
@click.option(
    "--batch-bytes",
    type=click.IntRange(1024),
    default=131_072,
    show_default=True,
    help="batch.size (librdkafka) = max_batch_size (aiokafka).",
)
@click.option("--profile", is_flag=True, help="Also run one uncounted RoutingProducer round under cProfile.")
@_as_json
@pass_settings
def producer(
    settings: Settings,
    records: int,
    rounds: int,
    tenants: int,
    partitions: int,
    batch_bytes: int,
    profile: bool,
    as_json: bool,
) -> None:
    """RoutingProducer vs raw confluent-kafka Producer vs aiokafka: records/s, end to end."""
    from routing_app.bench.producer import run_producer

    result = run_producer(
        settings,
        records=records,
        rounds=rounds,
        tenants=tenants,
        partitions=partitions,
        batch_bytes=batch_bytes,
        profile=profile,
        reporter=RichReporter(err),
    )
    cprofile = result.pop("cprofile", None)
    if cprofile:
        click.echo(cprofile, err=True)
    _finish(
        "producer throughput (median of rounds)",
        result,
        as_json,
        [
            ("ratio_vs_raw", ">=", 0.90, _always),
            ("ratio_vs_aiokafka", ">=", 2.0, _always),
        ],
    )


@bench.command()
@click.option("--routes", type=click.IntRange(1), default=1_000_000, show_default=True)
@click.option("--rounds", type=click.IntRange(1), default=1, show_default=True)
@click.option(
    "--profile", is_flag=True, help="Also profile the rebuild: cProfile of the cache thread, per-stage costs."
)
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=600.0, show_default=True)
@click.option(
    "--consumer-config",
    "consumer_config",
    multiple=True,
    metavar="KEY=VALUE",
    help="What-if librdkafka setting for the cache's consumer (and the baseline's); "
    "repeatable. Default: exactly what RouteCache uses.",
)
@_as_json
@pass_settings
def rebuild(
    settings: Settings,
    routes: int,
    rounds: int,
    profile: bool,
    timeout: float,
    consumer_config: tuple[str, ...],
    as_json: bool,
) -> None:
    """Seconds and memory for a fresh RouteCache to read N routes."""
    from routing_app.bench.rebuild import run_rebuild

    conf: dict[str, str] = {}
    for item in consumer_config:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--consumer-config")
        conf[key.strip()] = value.strip()
    result = run_rebuild(
        settings,
        routes=routes,
        rounds=rounds,
        profile=profile,
        timeout=timeout,
        consumer_config=conf,
        reporter=RichReporter(err),
    )
    cprofile = result.pop("cprofile", None)
    if cprofile:
        click.echo(cprofile, err=True)
    if "us_per_route" in result:
        stages = Table("stage", "us per route", title="where a route's time goes")
        for name, us in result["us_per_route"].items():
            stages.add_row(name, f"{us:.2f}")
        err.print(stages)
    full = 1_000_000

    def at_full(r: dict[str, Any]) -> bool:
        return int(r["routes"]) >= full

    _finish(
        "route cache rebuild",
        result,
        as_json,
        [
            ("seconds", "<=", 5.0, at_full),
            ("rss_mb", "<=", 300.0, at_full),
            ("routes_per_s", ">=", full / 5.0, _always),
        ],
    )


@bench.command()
@click.option("--producers", type=click.IntRange(1), default=4, show_default=True)
@click.option("--changes", type=click.IntRange(1), default=200, show_default=True)
@click.option(
    "--tenants",
    type=click.IntRange(1),
    default=1_000,
    show_default=True,
    help="Routes on the topic; changes pick among them at random.",
)
@click.option(
    "--max-gap-ms",
    type=click.FloatRange(0),
    default=200.0,
    show_default=True,
    help="Random pause (0..this) between changes.",
)
@_as_json
@pass_settings
def propagation(
    settings: Settings, producers: int, changes: int, tenants: int, max_gap_ms: float, as_json: bool
) -> None:
    """Milliseconds until a route change is in every RoutingProducer's cache."""
    from routing_app.bench.propagation import run_propagation

    result = run_propagation(
        settings,
        producers=producers,
        changes=changes,
        tenants=tenants,
        max_gap_ms=max_gap_ms,
        reporter=RichReporter(err),
    )
    _finish(
        "route change propagation (last cache)",
        result,
        as_json,
        [
            ("p99_ms", "<=", 100.0, _always),
        ],
    )


@bench.command()
@click.option(
    "--window-s",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Window size for the benchmark's worker (default: the configured one).",
)
@click.option("--rounds", type=click.IntRange(1), default=1, show_default=True)
@_as_json
@pass_settings
def reaction(settings: Settings, window_s: float | None, rounds: int, as_json: bool) -> None:
    """Hotspot onset -> producers routing the tenant elsewhere (one real worker)."""
    from routing_app.bench.control_plane import run_reaction

    result = run_reaction(settings, window_s=window_s, rounds=rounds, reporter=RichReporter(err))
    _finish(
        "reaction to a x20 hotspot",
        result,
        as_json,
        [
            ("seconds", "<=", result["target_s"], _always),
        ],
    )


@bench.command()
@click.option(
    "--rate",
    type=click.FloatRange(min=10),
    default=1500.0,
    show_default=True,
    help="Records per second across all tenants while they move.",
)
@_as_json
@pass_settings
def drain(settings: Settings, rate: float, as_json: bool) -> None:
    """Pause of ordering-safe moves, with the per-tenant sequence check (one real worker)."""
    from routing_app.bench.drain import run_drain

    result = run_drain(settings, rate=rate, reporter=RichReporter(err))
    _finish(
        "ordering-safe moves",
        result,
        as_json,
        [
            ("lost_strict", "<=", 0, _always),
            ("duplicated_strict", "<=", 0, _always),
            ("reordered_strict", "<=", 0, _always),
            ("moves", ">=", 20, _always),
        ],
    )


@bench.command()
@click.option(
    "--reports",
    type=click.IntRange(1),
    default=3_000_000,
    show_default=True,
    help="Tenant usage reports to aggregate (many per usage record).",
)
@click.option("--tenants", type=click.IntRange(1), default=5_000, show_default=True)
@click.option(
    "--top-k",
    type=click.IntRange(1),
    default=1_000,
    show_default=True,
    help="Tenants each simulated producer reports by name per interval.",
)
@click.option(
    "--rounds",
    type=click.IntRange(1),
    default=3,
    show_default=True,
    help="Pairs of runs (one worker, then two); the median ratio is reported.",
)
@_as_json
@pass_settings
def aggregate(settings: Settings, reports: int, tenants: int, top_k: int, rounds: int, as_json: bool) -> None:
    """Tenant usage reports aggregated per second by one worker and by two.

    events_per_s counts tenant reports (= reports_per_s); records_per_s counts the Kafka
    records that carried them (one per producer interval and usage partition)."""
    from routing_app.bench.control_plane import run_aggregate

    result = run_aggregate(
        settings, reports=reports, tenants=tenants, top_k=top_k, rounds=rounds, reporter=RichReporter(err)
    )
    _finish(
        "usage aggregation",
        result,
        as_json,
        [
            ("events_per_s_1w", ">=", 20_000, _always),
            ("scale_2w", ">=", 1.7, _always),
        ],
    )


@bench.command()
@click.option(
    "--from",
    "from_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Read saved results (DIR/<run>.json, DIR/run.json) instead of running the benches.",
)
@click.option(
    "--save",
    "save_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Save each run's JSON line as DIR/<run>.json (and its log), plus DIR/run.json.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("docs"),
    show_default=True,
    help="Where benchmarks.md and its PNGs go.",
)
@click.option("--quick", is_flag=True, help="Smaller sizes: minutes, not an hour, on 2 cores.")
@click.option(
    "--bench",
    "chosen",
    multiple=True,
    type=click.Choice(BENCHES),
    help="Run only these (repeatable) [default: all].",
)
@click.option(
    "--note",
    default=None,
    metavar="TEXT",
    help="A sentence for the page's header, e.g. what else ran on the machine.",
)
@click.pass_context
def report(
    ctx: click.Context,
    from_dir: Path | None,
    save_dir: Path | None,
    out_dir: Path,
    quick: bool,
    chosen: tuple[str, ...],
    note: str | None,
) -> None:
    """Run the benches and the simulator (or read saved results) and write benchmarks.md with
    every figure, its same-run baseline, the machine, the commands and plots."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise click.ClickException("the report draws with matplotlib: pip install 'routing-app[report]'")
    from routing_app.bench.report import write_report
    from routing_app.bench.report_runs import (
        execute_runs,
        load_results,
        plan_runs,
        subprocess_executor,
    )

    if from_dir is not None and (save_dir is not None or quick or chosen or note):
        raise click.UsageError(
            "--from reads saved results: --save, --quick, --bench and --note are for a run"
        )
    invocation = shlex.join(
        [
            "routing-app",
            "bench",
            "report",
            *(["--quick"] if quick else []),
            *[f"--bench={name}" for name in chosen],
            *([f"--from={from_dir}"] if from_dir else []),
            *([f"--save={save_dir}"] if save_dir else []),
            *([f"--out={out_dir}"] if out_dir != Path("docs") else []),
        ]
    )
    if from_dir is not None:
        results = load_results(from_dir)
    else:
        settings = ctx.find_object(Settings)
        root = ctx.find_root().params
        prefix = [
            *(["--config", str(root["config_file"])] if root.get("config_file") else []),
            *(["--bootstrap-servers", root["bootstrap_servers"]] if root.get("bootstrap_servers") else []),
            *(
                ["--schema-registry-url", root["schema_registry_url"]]
                if root.get("schema_registry_url")
                else []
            ),
        ]
        runs = plan_runs(chosen or BENCHES, quick)
        err.print(
            f"{len(runs)} commands; their progress goes to {save_dir or 'a temporary folder'}/<run>.log"
        )
        results = execute_runs(
            runs,
            subprocess_executor(prefix),
            quick,
            save_dir,
            err.print,
            invocation,
            extra={"kafka": settings.bootstrap} if settings else None,
            remark=note,
        )
    path = write_report(results, out_dir, invocation)
    measured, failed = len(results.results), len(results.failed)
    err.print(f"{measured} result(s), {failed} failed" if failed else f"{measured} result(s)")
    click.echo(str(path))
