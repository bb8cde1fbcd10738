"""``routing-app bench report``: benchmark figures in, ``benchmarks.md`` and its PNGs out.

Pure apart from writing the files: the figures come as the JSON lines the commands printed
(``BenchResults``; running or loading them is ``report_runs``'s job). A figure that is not
in the inputs is written "not measured" and its plot is left out: nothing is estimated.
This module orders the sections and places the plots; the figures table is
``report_figures``, the other text sections ``report_sections``, the drawing ``report_plots``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from routing_app.bench.report_figures import figures_section
from routing_app.bench.report_format import NOT_MEASURED, is_number
from routing_app.bench.report_results import BenchResults
from routing_app.bench.report_sections import (
    balance_section,
    failed_section,
    header_section,
    machine_section,
    reproduce_section,
)

REPORT_FILE = "benchmarks.md"
# The PNGs, by the section that shows them (written next to the markdown).
PLOTS = {
    "throughput": "benchmarks-throughput.png",
    "flash": "benchmarks-flash-crowd.png",
    "rebuild": "benchmarks-rebuild.png",
    "reaction": "benchmarks-reaction.png",
    "drain": "benchmarks-drain-pauses.png",
}


def render(results: BenchResults, out: Path, invocation: str) -> str:
    """The markdown; draws the PNGs it links into ``out``."""
    from routing_app.bench import report_plots as plots

    r = results.results
    out.mkdir(parents=True, exist_ok=True)
    lines = header_section(results, invocation) + machine_section(results) + figures_section(results)
    producer = r.get("producer", {})
    lines += _plot_section(
        "Producer throughput",
        "Records per second until every record is acknowledged: the "
        "RoutingProducer (every tenant routed) against a raw confluent-kafka Producer and "
        "aiokafka, same records and settings; the dots are single rounds.",
        "throughput",
        all(is_number(producer.get(f"{k}_rps")) for k in ("routing", "raw", "aiokafka")),
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
    lines += balance_section(results)
    points = [f for _, f in results.rebuilds() if is_number(f.get("seconds"))]
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
        is_number(reaction.get("seconds")) and is_number(reaction.get("window_s")),
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
    lines += failed_section(results) + reproduce_section(results, invocation)
    return "\n".join(lines).rstrip() + "\n"


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
    """A section with its plot, drawn only from measured figures; else why it is missing."""
    lines = [f"## {title}", "", text, ""]
    path = out / PLOTS[plot]
    if available:
        draw(path)
        lines += [f"![{alt}]({PLOTS[plot]})", ""]
    else:
        path.unlink(missing_ok=True)  # never leave an earlier run's picture beside this report
        lines += [f"*{NOT_MEASURED}*: {missing}", ""]
    return lines


def write_report(results: BenchResults, out: Path, invocation: str) -> Path:
    """Writes ``out/benchmarks.md`` (and its PNGs); returns the markdown's path."""
    path = out / REPORT_FILE
    text = render(results, out, invocation)
    path.write_text(text)
    return path
