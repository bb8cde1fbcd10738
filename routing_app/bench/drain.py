"""The proof of ordering-safe moves, and what they cost: ``routing-app bench drain``.

Tenants send numbered records without pause through an idempotent RoutingProducer; a consumer
group checks every record's number per tenant (per secondary key for a sharded tenant) while a
real worker moves them around with every kind of move. Strict tenants must arrive with nothing
lost, duplicated or out of order; relaxed tenants report how often they arrived out of order.
The pause of each strict move is the time between its draining and active writes.

This module runs the scenario; the traffic and its checker (``drain_traffic``,
``drain_checker``), the moves (``drain_moves``) and the figures (``drain_figures``) live apart.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from routing_app.bench.common import Reporter, Scratch, SilentReporter
from routing_app.bench.drain_figures import drain_figures
from routing_app.bench.drain_moves import make_moves, scenario_moves
from routing_app.bench.drain_traffic import PARTITIONS, Traffic, start_crashy_producer
from routing_app.bench.workers import scratch_settings, start_workers
from routing_app.config import Settings
from routing_app.control import ControlClient


def run_drain(
    settings: Settings,
    *,
    rate: float = 1500.0,
    reporter: Reporter | None = None,
    restart_producer: bool = True,
    workdir: Path | None = None,
) -> dict[str, Any]:
    """``workdir``: where the worker's log stays (a temporary folder otherwise)."""
    reporter = reporter or SilentReporter()
    with Scratch(settings, reporter) as scratch, tempfile.TemporaryDirectory() as temporary:
        tmp = str(workdir or temporary)
        group = f"bench-drain-checker-{scratch.suffix}"
        # The planner stays out of the way (no automatic moves): the moves here are the ones
        # the scenario makes, one kind after another, through the same writer.
        s = scratch_settings(
            settings,
            scratch,
            "drain",
            lag_groups=group,
            window_s=2.0,
            drain_timeout_ms=30_000,
            planner_policy="max_moves_per_cycle=0",
        )
        data = scratch.topic("drain-data", PARTITIONS)
        workers = start_workers(s, 1, Path(tmp), reporter)
        try:
            return _scenario(s, data, group, rate, reporter, restart_producer)
        finally:
            for w in workers:
                w.stop()


def _scenario(
    s: Settings, data: str, group: str, rate: float, reporter: Reporter, restart_producer: bool
) -> dict[str, Any]:
    """Traffic on, every move made (a producer restart and a crash among them), traffic off."""
    traffic = Traffic(s, data, group, rate)
    crashy = start_crashy_producer(s, data)
    try:
        if crashy.stdout is None or crashy.stdout.readline().strip() != "ready":
            raise RuntimeError("the crashing producer did not start")
        traffic.start()
        control = ControlClient(s)
        moves = scenario_moves(data)
        restart_at = len(moves) // 2 if restart_producer else -1
        crash_at = restart_at + 3 if restart_producer else len(moves) // 2
        reporter.note(f"{len(moves)} moves under {rate:.0f} records/s")
        time.sleep(3.0)  # usage reports make the producers known, live ones
        try:
            applied = make_moves(control, traffic, crashy, data, moves, restart_at, crash_at)
        finally:
            left = traffic.finish()
    finally:
        crashy.kill()
    traffic.raise_if_failed()
    return drain_figures(s, traffic, applied, left, restart_producer)
