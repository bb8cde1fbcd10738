"""``routing-app bench producer | rebuild | propagation | ... [--json]``, ``bench report``.

Progress and a summary go to stderr; with ``--json`` stdout ends with exactly one JSON line of
figures. Targets are shown next to the figures, never asserted: the exit code is 0 whenever
the benchmark ran. Here are the options and the calls; what a command prints is
``bench_output``'s, the ``report`` command is ``bench_report``'s.
"""

from __future__ import annotations

from typing import Any

import click

from routing_app.cli.bench_output import RichReporter, always, err, finish, print_cprofile, print_stages
from routing_app.cli.bench_report import report
from routing_app.cli.context import pass_settings
from routing_app.config import Settings

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
    print_cprofile(result)
    finish(
        "producer throughput (median of rounds)",
        result,
        as_json,
        [
            ("ratio_vs_raw", ">=", 0.90, always),
            ("ratio_vs_aiokafka", ">=", 2.0, always),
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
    print_cprofile(result)
    print_stages(result)
    full = 1_000_000

    def at_full(r: dict[str, Any]) -> bool:
        return int(r["routes"]) >= full

    finish(
        "route cache rebuild",
        result,
        as_json,
        [
            ("seconds", "<=", 5.0, at_full),
            ("rss_mb", "<=", 300.0, at_full),
            ("routes_per_s", ">=", full / 5.0, always),
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
    finish(
        "route change propagation (last cache)",
        result,
        as_json,
        [
            ("p99_ms", "<=", 100.0, always),
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
    from routing_app.bench.reaction import run_reaction

    result = run_reaction(settings, window_s=window_s, rounds=rounds, reporter=RichReporter(err))
    finish(
        "reaction to a x20 hotspot",
        result,
        as_json,
        [
            ("seconds", "<=", result["target_s"], always),
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
    finish(
        "ordering-safe moves",
        result,
        as_json,
        [
            ("lost_strict", "<=", 0, always),
            ("duplicated_strict", "<=", 0, always),
            ("reordered_strict", "<=", 0, always),
            ("moves", ">=", 20, always),
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
    from routing_app.bench.aggregate import run_aggregate

    result = run_aggregate(
        settings, reports=reports, tenants=tenants, top_k=top_k, rounds=rounds, reporter=RichReporter(err)
    )
    finish(
        "usage aggregation",
        result,
        as_json,
        [
            ("events_per_s_1w", ">=", 20_000, always),
            ("scale_2w", ">=", 1.7, always),
        ],
    )


bench.add_command(report)
