"""The report's first table: every figure next to the baseline measured in the same run, and
its target met or missed.

Apart from the other sections because it is the one place that knows which figure of which
run is compared with what (``Row``), and how a target is judged (a rebuild's only at 1M routes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from routing_app.bench.report_format import is_number, markdown_table, show
from routing_app.bench.report_results import BenchResults

FULL_REBUILD_ROUTES = 1_000_000


@dataclass(frozen=True)
class Row:
    """One figure of one run, compared with the baseline measured in the same run."""

    run: str
    label: str
    key: str
    unit: str = ""
    baseline: str = ""  # what the baseline is
    baseline_key: str | None = None
    ratio_key: str | None = None  # the bench's own ratio (unrounded inputs), when it has one
    target: tuple[str, float] | None = None
    target_on_ratio: bool = False
    full_size_only: bool = False  # the target is stated for 1M routes


def _rows(results: BenchResults) -> list[Row]:
    """The rows in the table's order; one pair per rebuild size that ran."""
    rows = [
        Row(
            "producer",
            "RoutingProducer throughput",
            "routing_rps",
            "records/s",
            "raw confluent-kafka Producer",
            "raw_rps",
            "ratio_vs_raw",
            (">=", 0.90),
            True,
        ),
        Row(
            "producer",
            "RoutingProducer throughput",
            "routing_rps",
            "records/s",
            "aiokafka",
            "aiokafka_rps",
            "ratio_vs_aiokafka",
            (">=", 2.0),
            True,
        ),
    ]
    rebuilds = results.rebuilds() or [("rebuild", {})]
    for name, figures in rebuilds:
        size = f"{figures['routes']:,} routes" if figures else "routes"
        rows += [
            Row(
                name,
                f"route cache rebuild to ready, {size}",
                "seconds",
                "s",
                "consume only (no decoding)",
                "consume_only_seconds",
                "ratio_vs_consume_only",
                ("<=", 1.2),
                target_on_ratio=True,
                full_size_only=True,
            ),
            Row(
                name,
                f"route cache settled (every route checked), {size}",
                "settled_seconds",
                "s",
                "consume only (no decoding)",
                "consume_only_seconds",
                "settled_ratio_vs_consume_only",
                ("<=", 5.0),
                full_size_only=True,
            ),
            Row(
                name,
                f"rebuild peak RSS growth, {size}",
                "rss_mb",
                "MB",
                "consume only (no decoding)",
                "consume_only_rss_mb",
                None,
                ("<=", 300.0),
                full_size_only=True,
            ),
        ]
    consumer = "plain consumer tailing the topic"
    rows += [
        Row("propagation", "route change in every cache, p50", "p50_ms", "ms", consumer, "baseline_p50_ms"),
        Row(
            "propagation",
            "route change in every cache, p99",
            "p99_ms",
            "ms",
            consumer,
            "baseline_p99_ms",
            target=("<=", 10.0),
        ),
        Row("propagation", "route change in every cache, max", "max_ms", "ms", consumer, "baseline_max_ms"),
        Row(
            "reaction",
            "x20 hotspot: routed to its new partition",
            "seconds",
            "s",
            "one window",
            "window_s",
            target=("<=", results.figure("reaction", "target_s") or math.inf),
        ),
        Row(
            "reaction",
            "x20 hotspot: off its old partition",
            "off_old_partition_s",
            "s",
            "one window",
            "window_s",
        ),
        Row("drain", "strict move pause, p50", "pause_p50_ms", "ms"),
        Row("drain", "strict move pause, p99 (with the killed producer's expiry)", "pause_p99_ms", "ms"),
        Row("drain", "strict move pause, p99 (live producers)", "pause_p99_ms_live_producers", "ms"),
        Row("drain", "strict move pause, max", "pause_max_ms", "ms"),
        Row(
            "drain",
            "strict records lost",
            "lost_strict",
            "",
            "relaxed tenants, lost",
            "lost_relaxed",
            target=("<=", 0),
        ),
        Row("drain", "strict records duplicated", "duplicated_strict", "", target=("<=", 0)),
        Row(
            "drain",
            "strict records out of order",
            "reordered_strict",
            "",
            "relaxed tenants (no drain), out of order",
            "reordered_relaxed",
            target=("<=", 0),
        ),
        Row("drain", "moves made", "moves", "", target=(">=", 20)),
        Row(
            "aggregate",
            "usage reports aggregated, two workers",
            "events_per_s_2w",
            "reports/s",
            "one worker",
            "events_per_s_1w",
            "scale_2w",
            (">=", 1.7),
            True,
        ),
        Row(
            "aggregate",
            "usage reports aggregated, one worker",
            "events_per_s_1w",
            "reports/s",
            target=(">=", 20_000),
        ),
        Row(
            "simulate-flash",
            "max/mean partition load (planner)",
            "max_over_mean",
            "",
            "murmur2 hashing",
            "hash_max_over_mean",
            target=("<=", 1.10),
        ),
        Row(
            "simulate-flash",
            "max/mean partition load (planner)",
            "max_over_mean",
            "",
            "power of two choices (PKG)",
            "pkg_max_over_mean",
            target=("<=", 1.10),
        ),
        Row(
            "simulate-flash",
            "tenants moved per hour / tenants",
            "moved_fraction_per_hour",
            "",
            "hashing (never moves)",
            target=("<=", 0.01),
        ),
    ]
    return rows


def figures_section(results: BenchResults) -> list[str]:
    """The lines of "Figures and their baselines"."""
    return [
        "## Figures and their baselines",
        "",
        *markdown_table(
            ["figure", "measured", "baseline (same run)", "ratio", "target"],
            [_row_cells(row, results) for row in _rows(results)],
        ),
        "",
    ]


def _row_cells(row: Row, results: BenchResults) -> list[str]:
    """figure, measured, baseline, ratio (the bench's own, else measured / baseline), target."""
    value = results.figure(row.run, row.key)
    base = results.figure(row.run, row.baseline_key) if row.baseline_key else None
    ratio = results.figure(row.run, row.ratio_key) if row.ratio_key else None
    if not is_number(ratio) and is_number(value) and is_number(base) and base != 0:
        ratio = value / base
    base_text = (
        ""
        if not row.baseline
        else (f"{row.baseline}: {show(base, row.unit)}" if row.baseline_key else row.baseline)
    )
    return [
        row.label,
        show(value, row.unit),
        base_text,
        f"{ratio:.3g}x" if is_number(ratio) else "",
        _verdict(row, value, ratio, results),
    ]


def _verdict(row: Row, value: Any, ratio: Any, results: BenchResults) -> str:
    """Met or missed, and the target; only the target when there is nothing to judge."""
    if row.target is None or not math.isfinite(row.target[1]):
        return ""
    op, goal = row.target
    sign = "≥" if op == ">=" else "≤"
    stated = f"{sign} {goal:,g}{'x' if row.target_on_ratio else ' ' + row.unit}".rstrip()
    if row.full_size_only and (results.figure(row.run, "routes") or 0) < FULL_REBUILD_ROUTES:
        return f"({stated} at 1M routes)"
    checked = ratio if row.target_on_ratio else value
    if not is_number(checked):
        return stated
    met = checked >= goal if op == ">=" else checked <= goal
    return f"{'met' if met else 'missed'} ({stated})"
