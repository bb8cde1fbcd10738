"""``routing-app bench report``: benchmark figures in, ``benchmarks.md`` and its PNGs out.

Pure apart from writing the files: the figures come as the JSON lines the commands printed
(``BenchResults``; running or loading them is ``report_runs``'s job). A figure that is not
in the inputs is written "not measured" and its plot is left out: nothing is estimated.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NOT_MEASURED = "not measured"
REPORT_FILE = "benchmarks.md"
# The PNGs, by the section that shows them (written next to the markdown).
PLOTS = {
    "throughput": "benchmarks-throughput.png",
    "flash": "benchmarks-flash-crowd.png",
    "rebuild": "benchmarks-rebuild.png",
    "reaction": "benchmarks-reaction.png",
    "drain": "benchmarks-drain-pauses.png",
}
BALANCE_ZIPFS = (1.0, 1.4, 2.0)
BALANCE_PARTITIONS = (10, 50, 100)
FULL_REBUILD_ROUTES = 1_000_000


def balance_name(zipf: float, partitions: int) -> str:
    """The run name of one cell of the balance table."""
    return f"simulate-balance-z{zipf:g}-p{partitions}"


@dataclass
class BenchResults:
    """Figures by run name (``producer``, ``rebuild-100000``, ``simulate-flash``, ...), the
    commands that printed them, those that failed and why, and the machine they ran on."""

    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    commands: dict[str, str] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    quick: bool | None = None
    invocation: str | None = None  # the report command that ran them, when one did
    note: str | None = None  # what the person who ran them said about the machine

    def why_missing(self, prefix: str, default: str) -> str:
        """Why no figures of the runs named ``prefix...``: they failed, or they did not run."""
        failed = sorted(name for name in self.failed if name.startswith(prefix))
        if failed:
            return f"{', '.join(f'`{n}`' for n in failed)} failed (see *Runs that failed*)."
        return default

    def figure(self, run: str, key: str) -> Any:
        return self.results.get(run, {}).get(key)

    def rebuilds(self) -> list[tuple[str, dict[str, Any]]]:
        """Every rebuild run with a route count, fewest routes first."""
        found = [
            (name, r)
            for name, r in self.results.items()
            if name.startswith("rebuild") and _number(r.get("routes"))
        ]
        return sorted(found, key=lambda item: item[1]["routes"])


# -- the table of figures and baselines --------------------------------------------------------
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
                f"route cache rebuild, {size}",
                "seconds",
                "s",
                "consume only (no decoding)",
                "consume_only_seconds",
                "ratio_vs_consume_only",
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
            target=("<=", 100.0),
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


def show(value: Any, unit: str = "") -> str:
    """A figure as the report writes it; a missing one is "not measured"."""
    if isinstance(value, bool):
        return str(value).lower()
    if not _number(value):
        return NOT_MEASURED
    if isinstance(value, int):
        text = f"{value:,}"
    elif abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}" if unit else text


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _row_cells(row: Row, results: BenchResults) -> list[str]:
    value = results.figure(row.run, row.key)
    base = results.figure(row.run, row.baseline_key) if row.baseline_key else None
    ratio = results.figure(row.run, row.ratio_key) if row.ratio_key else None
    if not _number(ratio) and _number(value) and _number(base) and base != 0:
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
        f"{ratio:.3g}x" if _number(ratio) else "",
        _verdict(row, value, ratio, results),
    ]


def _verdict(row: Row, value: Any, ratio: Any, results: BenchResults) -> str:
    if row.target is None or not math.isfinite(row.target[1]):
        return ""
    op, goal = row.target
    sign = "≥" if op == ">=" else "≤"
    stated = f"{sign} {goal:,g}{'x' if row.target_on_ratio else ' ' + row.unit}".rstrip()
    if row.full_size_only and (results.figure(row.run, "routes") or 0) < FULL_REBUILD_ROUTES:
        return f"({stated} at 1M routes)"
    checked = ratio if row.target_on_ratio else value
    if not _number(checked):
        return stated
    met = checked >= goal if op == ">=" else checked <= goal
    return f"{'met' if met else 'missed'} ({stated})"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


# -- sections ----------------------------------------------------------------------------------
def _header(results: BenchResults, invocation: str) -> list[str]:
    machine = results.machine
    source = (
        ""
        if results.invocation == invocation
        else (f" from the results of `{results.invocation}`" if results.invocation else " from saved results")
    )
    when = f" (the run started {machine['started']})" if machine.get("started") else ""
    lines = [
        "# Benchmarks",
        "",
        f"Written by `{invocation}`{source}{when}. Every figure below was printed by a "
        "command of the last section; ratios are against a baseline measured in the same "
        "command.",
        "",
    ]
    if results.quick:
        lines += [
            "**Quick run**: smaller sizes than the benches' defaults (see the commands); "
            "the rebuild's targets, stated for 1M routes, are not judged below that.",
            "",
        ]
    cores = machine.get("cores") or 0
    loads = {
        when: machine[f"load_avg_{when}"][0] for when in ("start", "end") if machine.get(f"load_avg_{when}")
    }
    if cores and loads and max(loads.values()) >= 0.5 * cores:
        seen = " and ".join(f"{load:g} at the {when}" for when, load in loads.items())
        lines += [
            f"**Noisy figures**: the machine was busy with other work while this ran "
            f"(1-minute load average {seen}, on {cores} cores), which took CPU from the "
            "benchmarks, the broker and the workers alike. Absolute rates and latencies "
            "are lower and noisier than on an idle machine; the ratios against same-run "
            "baselines are the steadier figures.",
            "",
        ]
    if results.note:
        lines += [f"Note from the run: {results.note}", ""]
    return lines


def _machine(results: BenchResults) -> list[str]:
    m = results.machine
    if not m:
        return ["## Machine", "", f"{NOT_MEASURED}: these results were saved without it.", ""]

    def load(key: str) -> str:
        value = m.get(key)
        return " / ".join(f"{x:g}" for x in value) if value else NOT_MEASURED

    rows = [
        ["cores", show(m.get("cores"))],
        ["CPU", m.get("cpu") or NOT_MEASURED],
        [
            "memory",
            f"{show(m.get('memory_gib'), 'GiB')} ({show(m.get('memory_available_gib'), 'GiB')}"
            " available at the start)",
        ],
        ["load average (1 / 5 / 15 min), start", load("load_avg_start")],
        ["load average (1 / 5 / 15 min), end", load("load_avg_end")],
        ["OS, Python", f"{m.get('os', NOT_MEASURED)}, Python {m.get('python', '?')}"],
        ["Kafka", m.get("kafka") or NOT_MEASURED],
        ["run", f"{m.get('started', '?')} to {m.get('finished', '?')}"],
    ]
    return ["## Machine", "", *_table(["", ""], rows), ""]


def _plot_section(
    title: str,
    text: str,
    plot: str,
    available: bool,
    missing: str,
    draw: Callable[[Path], None],
    out: Path,
    alt: str,
) -> list[str]:
    lines = [f"## {title}", "", text, ""]
    path = out / PLOTS[plot]
    if available:
        draw(path)
        lines += [f"![{alt}]({PLOTS[plot]})", ""]
    else:
        path.unlink(missing_ok=True)  # never leave an earlier run's picture beside this report
        lines += [f"*{NOT_MEASURED}*: {missing}", ""]
    return lines


def _balance(results: BenchResults) -> list[str]:
    rows = []
    for zipf in BALANCE_ZIPFS:
        for partitions in BALANCE_PARTITIONS:
            r = results.results.get(balance_name(zipf, partitions), {})
            loads = [
                _two_places(r.get(key))
                for key in (
                    "max_over_mean",
                    "max_over_mean_p95",
                    "hash_max_over_mean",
                    "pkg_max_over_mean",
                    "stream_floor_max_over_mean",
                )
            ]
            moved = r.get("moved_fraction_per_hour")
            rows.append(
                [
                    f"{zipf:g}",
                    str(partitions),
                    *loads,
                    f"{moved:.2%}" if _number(moved) else NOT_MEASURED,
                    show(r.get("hours"), "h"),
                ]
            )
    return [
        "## Balance table",
        "",
        "Median max/mean partition load over the second half of each simulated run (after the "
        "start-up moves; flash crowds, churn and the diurnal wave go on), the planner against "
        "murmur2 hashing and the power of two choices (PKG) on the same traffic. 1.00 is "
        "perfect balance. *Order floor*: the heaviest ordered stream (a key-only tenant, or "
        "a tenant's heaviest key) over the mean; no placement that keeps each stream on one "
        "partition goes below it.",
        "",
        *_table(
            [
                "Zipf z",
                "partitions",
                "planner",
                "planner p95",
                "hashing",
                "PKG",
                "order floor",
                "tenants moved / h",
                "simulated",
            ],
            rows,
        ),
        "",
    ]


def _two_places(value: Any) -> str:
    return f"{value:.2f}" if _number(value) else NOT_MEASURED


def render(results: BenchResults, out: Path, invocation: str) -> str:
    """The markdown; draws the PNGs it links into ``out``."""
    from routing_app.bench import report_plots as plots

    r = results.results
    out.mkdir(parents=True, exist_ok=True)
    lines = _header(results, invocation) + _machine(results)
    lines += [
        "## Figures and their baselines",
        "",
        *_table(
            ["figure", "measured", "baseline (same run)", "ratio", "target"],
            [_row_cells(row, results) for row in _rows(results)],
        ),
        "",
    ]
    producer = r.get("producer", {})
    lines += _plot_section(
        "Producer throughput",
        "Records per second until every record is acknowledged: the "
        "RoutingProducer (every tenant routed) against a raw confluent-kafka Producer and "
        "aiokafka, same records and settings; the dots are single rounds.",
        "throughput",
        all(_number(producer.get(f"{k}_rps")) for k in ("routing", "raw", "aiokafka")),
        results.why_missing("producer", "the producer bench did not run."),
        lambda p: plots.throughput(producer, p),
        out,
        "producer throughput bars",
    )
    flash = r.get("simulate-flash", {})
    series = flash.get("series") or {}
    lines += _plot_section(
        "Balance under a flash crowd",
        "max/mean partition load in every simulated window; the "
        "shaded spans are flash crowds (one tenant sends 20 times its rate for 5 minutes).",
        "flash",
        all(
            plots.finite_numbers(series.get(k))
            for k in ("t_s", "max_over_mean", "hash_max_over_mean", "pkg_max_over_mean")
        ),
        results.why_missing(
            "simulate-flash", "no simulation with a per-window series (`simulate --series`)."
        ),
        lambda p: plots.flash_crowd(flash, p),
        out,
        "max/mean partition load over time",
    )
    lines += _balance(results)
    points = [f for _, f in results.rebuilds() if _number(f.get("seconds"))]
    lines += _plot_section(
        "Route cache rebuild vs routes",
        "Seconds for a fresh RouteCache to read every route, "
        "against a consumer with the same settings that reads the records without decoding.",
        "rebuild",
        bool(points),
        results.why_missing("rebuild", "no rebuild bench ran."),
        lambda p: plots.rebuild(points, p),
        out,
        "rebuild time against routes",
    )
    reaction = r.get("reaction", {})
    lines += _plot_section(
        "One hotspot's reaction",
        "A tenant turns x20 at the start of a window; one real worker "
        "plans when the window ends; the times are when a RoutingProducer stopped sending it to "
        "its old partition and when it sent it to the new one.",
        "reaction",
        _number(reaction.get("seconds")) and _number(reaction.get("window_s")),
        results.why_missing("reaction", "the reaction bench did not run."),
        lambda p: plots.reaction(reaction, p),
        out,
        "hotspot reaction timeline",
    )
    drain = r.get("drain", {})
    lines += _plot_section(
        "Drain pauses",
        "How long each strict (ordering-safe) move held its tenant's records, from the events topic.",
        "drain",
        plots.finite_numbers(drain.get("pauses_ms")),
        results.why_missing("drain", "the drain bench did not run, or its results have no `pauses_ms` list."),
        lambda p: plots.drain_pauses(drain, p),
        out,
        "drain pause distribution",
    )
    if results.failed:
        lines += [
            "## Runs that failed",
            "",
            *_table(
                ["run", "why"],
                [[name, why.replace("\n", " ")[:300]] for name, why in sorted(results.failed.items())],
            ),
            "",
        ]
    lines += _reproduce(results, invocation)
    return "\n".join(lines).rstrip() + "\n"


def _reproduce(results: BenchResults, invocation: str) -> list[str]:
    lines = [
        "## Reproduce",
        "",
        "Against the broker and registry of `ROUTING_BOOTSTRAP_SERVERS` / "
        "`ROUTING_SCHEMA_REGISTRY_URL` (or the local stack), each command alone (its last "
        "stdout line is the figures):",
        "",
    ]
    if results.commands:
        lines += ["```bash", *[results.commands[name] for name in results.commands], "```", ""]
    else:
        lines += [
            f"*The commands were {NOT_MEASURED.replace('measured', 'recorded')} with these results.*",
            "",
        ]
    lines += ["All of them, and this page:", "", "```bash", invocation, "```"]
    return lines


def write_report(results: BenchResults, out: Path, invocation: str) -> Path:
    path = out / REPORT_FILE
    text = render(results, out, invocation)
    path.write_text(text)
    return path
