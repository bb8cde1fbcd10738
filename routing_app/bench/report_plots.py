"""The PNGs of ``routing-app bench report``, drawn with matplotlib's Agg backend (no display).

Each function draws measured figures only and is called only when they are there; it writes
one PNG and returns nothing. matplotlib comes with the ``report`` extra (and ``dev``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: files only, whatever $DISPLAY or $MPLBACKEND say

import matplotlib.pyplot as plt
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

OURS, HASH, PKG, BASE = "#1f77b4", "#d62728", "#ff7f0e", "#7f7f7f"


def _plain(axis: Axis, log: bool = True) -> None:
    """Ticks as plain numbers (2,000, not 2x10^3); on a log axis at 1, 2, 5 x 10^k only."""
    if log:
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_minor_formatter(NullFormatter())
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}" if value >= 1 else f"{value:g}"))


def _save(figure: Figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=110, bbox_inches="tight")  # legends below the axes included
    plt.close(figure)


def throughput(figures: dict[str, Any], path: Path) -> None:
    """Median records/s of the routing producer and its two baselines; each round as a dot."""
    kinds = [
        ("routing", "RoutingProducer", OURS),
        ("raw", "raw confluent-kafka", BASE),
        ("aiokafka", "aiokafka", HASH),
    ]
    shown = [
        (kind, label, colour)
        for kind, label, colour in kinds
        if isinstance(figures.get(f"{kind}_rps"), int | float)
    ]
    figure, axes = plt.subplots(figsize=(6.4, 4.0))
    rounds = figures.get("rounds_rps") or {}
    for x, (kind, _, colour) in enumerate(shown):
        median = figures[f"{kind}_rps"]
        axes.bar(x, median, color=colour, width=0.6)
        axes.annotate(f"{median:,.0f}", (x, median), ha="center", va="bottom", fontsize=9)
        values = rounds.get(kind) or []
        axes.scatter(
            [x] * len(values),
            values,
            color="black",
            s=10,
            zorder=3,
            label="one round" if x == 0 and values else None,
        )
    axes.set_xticks(range(len(shown)), [label for _, label, _ in shown])
    axes.set_ylabel("records/s (acknowledged, end to end)")
    _plain(axes.yaxis, log=False)
    axes.set_title(
        f"producer throughput: {figures.get('records', 0):,} records, "
        f"{figures.get('tenants', 0):,} tenants, median of {figures.get('rounds', 0)} "
        "round(s)",
        fontsize=10,
    )
    if rounds:
        axes.legend(loc="upper right", fontsize=8)
    _save(figure, path)


def flash_crowd(figures: dict[str, Any], path: Path) -> None:
    """max/mean partition load per window: the planner, murmur2 hashing and PKG."""
    series = figures["series"]
    minutes = [t / 60 for t in series["t_s"]]
    figure, axes = plt.subplots(figsize=(8.0, 4.2))
    for start, end in series.get("flash_periods_s") or []:
        axes.axvspan(start / 60, end / 60, color="#ffd54f", alpha=0.35, lw=0)
    axes.plot(minutes, series["hash_max_over_mean"], color=HASH, lw=1, label="murmur2 hashing")
    axes.plot(minutes, series["pkg_max_over_mean"], color=PKG, lw=1, label="power of two choices (PKG)")
    axes.plot(minutes, series["max_over_mean"], color=OURS, lw=1.4, label="routing_app planner")
    if series.get("flash_periods_s"):
        axes.plot([], [], color="#ffd54f", lw=8, alpha=0.6, label="flash crowd (one tenant x20)")
    axes.set_yscale("log")
    _plain(axes.yaxis)
    axes.set_xlabel("simulated minutes")
    axes.set_ylabel("max / mean partition load (log)")
    axes.set_title(
        f"{figures.get('tenants', 0):,} tenants (Zipf {figures.get('zipf', 0):g}) on "
        f"{figures.get('partitions', 0)} partitions, {figures.get('window_s', 0):g} s "
        "windows",
        fontsize=10,
    )
    axes.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    axes.grid(True, which="both", alpha=0.3)
    _save(figure, path)


def rebuild(points: Sequence[dict[str, Any]], path: Path) -> None:
    """Seconds to rebuild a RouteCache against reading the same records without decoding."""
    points = sorted(points, key=lambda p: p["routes"])
    routes = [p["routes"] for p in points]
    figure, axes = plt.subplots(figsize=(6.4, 4.0))
    axes.plot(routes, [p["seconds"] for p in points], "o-", color=OURS, label="RouteCache rebuild")
    base = [
        (p["routes"], p["consume_only_seconds"])
        for p in points
        if isinstance(p.get("consume_only_seconds"), int | float)
    ]
    if base:
        axes.plot(
            *zip(*base, strict=True), "s--", color=BASE, label="consume only (same consumer, no decoding)"
        )
    axes.scatter(
        [1_000_000], [5.0], marker="*", s=120, color=HASH, zorder=3, label="target: 5 s at 1M routes"
    )
    axes.set_xscale("log")
    axes.set_yscale("log")
    _plain(axes.xaxis)
    _plain(axes.yaxis)
    axes.set_xlabel("routes on the topic")
    axes.set_ylabel("seconds (log)")
    axes.set_title("route cache rebuild time vs routes", fontsize=10)
    axes.legend(fontsize=8)
    axes.grid(True, which="both", alpha=0.3)
    _save(figure, path)


def reaction(figures: dict[str, Any], path: Path) -> None:
    """One hotspot, from the x20 onset (at a window start) until producers route it anew."""
    window = float(figures["window_s"])
    marks = [(0.0, "x20 onset\n(a window starts)", HASH)]
    marks.append((window, "one window\nlater", BASE))
    if isinstance(figures.get("off_old_partition_s"), int | float):
        marks.append((float(figures["off_old_partition_s"]), "off the old partition\n(draining)", PKG))
    marks.append((float(figures["seconds"]), "routed to the\nnew partition", OURS))
    end = max(m[0] for m in marks)
    target = figures.get("target_s")
    figure, axes = plt.subplots(figsize=(8.0, 2.8))
    axes.axhline(0, color="black", lw=1)
    axes.axvspan(0, window, color="#eeeeee", lw=0)
    for i, (t, label, colour) in enumerate(marks):
        axes.plot([t], [0], "o", color=colour, ms=9, zorder=3)
        axes.annotate(
            f"{label}\n{t:.2f} s",
            (t, 0),
            xytext=(0, 18 if i % 2 == 0 else -48),
            textcoords="offset points",
            ha="center",
            fontsize=8,
        )
    others = figures.get("all_seconds") or []
    if len(others) > 1:
        axes.plot(others, [0.25] * len(others), "|", color=OURS, ms=12, label=f"each of {len(others)} rounds")
        axes.legend(fontsize=8, loc="upper left")
    if isinstance(target, int | float):
        axes.axvline(target, color=HASH, ls="--", lw=1)
        axes.annotate(
            f"target {target:g} s",
            (target, 0.8),
            ha="right",
            fontsize=8,
            color=HASH,
            xytext=(-3, 0),
            textcoords="offset points",
        )
        end = max(end, target)
    axes.set_xlim(-0.05 * end - 0.2, end * 1.1 + 0.2)
    axes.set_ylim(-1, 1)
    axes.set_yticks([])
    axes.set_xlabel("seconds after the onset")
    axes.set_title(
        f"reaction to a x20 hotspot ({window:g} s windows, median of {figures.get('rounds', 1)} round(s))",
        fontsize=10,
    )
    _save(figure, path)


def drain_pauses(figures: dict[str, Any], path: Path) -> None:
    """Histogram of every strict move's pause (log scale), the expiry waits apart."""
    everything = [float(p) for p in figures["pauses_ms"]]
    live = [float(p) for p in figures.get("pauses_ms_live_producers") or everything]
    waits = list((Counter(everything) - Counter(live)).elements())
    low = max(min(everything), 1.0)
    high = max(max(everything), low * 2)
    edges = [low * (high / low) ** (i / 24) for i in range(25)]
    edges[0], edges[-1] = low * 0.99, high * 1.01
    figure, axes = plt.subplots(figsize=(6.4, 4.0))
    axes.hist(
        [max(p, low) for p in live], bins=edges, color=OURS, label=f"moves with live producers ({len(live)})"
    )
    if waits:
        axes.hist(
            [max(p, low) for p in waits],
            bins=edges,
            color=HASH,
            label=f"waited for a killed producer to expire ({len(waits)})",
        )
    for key, style in (("pause_p50_ms", ":"), ("pause_p99_ms", "--")):
        value = figures.get(key)
        if isinstance(value, int | float) and value > 0:
            axes.axvline(value, color="black", ls=style, lw=1, label=f"{key.split('_')[1]} {value:,.0f} ms")
    axes.set_xscale("log")
    _plain(axes.xaxis)
    axes.set_xlabel("pause of a strict move (ms, log)")
    axes.set_ylabel("moves")
    axes.set_title(f"drain pauses: {len(everything)} strict moves", fontsize=10)
    axes.legend(fontsize=8)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    _save(figure, path)


def finite_numbers(values: Any) -> bool:
    """A non-empty list of finite numbers (what a distribution or series needs)."""
    return (
        isinstance(values, list)
        and bool(values)
        and all(isinstance(v, int | float) and math.isfinite(v) for v in values)
    )
