"""The planning loop, run by the control agent (so the planner is also the single writer).

Window summaries and ticks arrive on the control topic. Once a window is complete (every usage
partition closed it) or overdue, the loop gathers the planner's input (``window_input``: rates
from the window, routes and state from the writer's tables, load and lag from the broker), calls
the pure ``plan``, and writes each change through the writer with the next epoch
(``change_writer``).

Early summaries (a tenant surging before its window closes) go to the early path
(``early_path``), which plans them at once on the last window's input and relieves the
partitions surging tenants crowd. This module holds the lifecycle and the order of the steps.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Mapping

from routing_app.app.change_writer import ChangeWriter
from routing_app.app.early_path import EarlyPath
from routing_app.app.policy_text import policy_from_text
from routing_app.app.window_input import BrokerLoads, window_input, window_rates
from routing_app.app.writer import RouteWriter
from routing_app.codec import AvroCodec, DecodeError
from routing_app.config import Settings
from routing_app.planner import PartitionLoad, Plan, plan
from routing_app.windows import CompleteWindow, WindowCompletion, WindowSummary

log = logging.getLogger(__name__)

LOAD_HISTORY_WINDOWS = 360


class PlanningLoop:
    def __init__(self, settings: Settings, writer: RouteWriter, summary_codec: AvroCodec) -> None:
        self._settings = settings
        self._writer = writer
        self._summaries = summary_codec
        self.policy = policy_from_text(settings.planner_policy)
        self.completion = WindowCompletion(max_wait_ms=settings.planner_max_wait_ms)
        self._broker = BrokerLoads(settings)
        # Shared with the parts below, which count their own events in it.
        self.counters: dict[str, float] = {
            "summaries": 0,
            "summaries_undecodable": 0,
            "cycles": 0,
            "incomplete_cycles": 0,
            "last_cycle_ms": 0.0,
            "stale_decisions": 0,
            "planner_errors": 0,
            "tenants_tracked": 0,
            "early_summaries": 0,
            "early_cycles": 0,
            "early_changes": 0,
            "relieve_changes": 0,
            "early_without_window": 0,
        }
        self._changes = ChangeWriter(writer, self.counters)
        self._early = EarlyPath(settings, writer, self._changes, self.counters)
        self.last_window: CompleteWindow | None = None
        self.last_loads: Mapping[tuple[str, int], PartitionLoad] = {}
        # (window end ms, loads sampled for it), newest last: partition load over time.
        self.load_history: deque[tuple[int, Mapping[tuple[str, int], PartitionLoad]]] = deque(
            maxlen=LOAD_HISTORY_WINDOWS
        )

    async def on_summary(self, raw: bytes | None, offset: int) -> None:
        summary = self._decode(raw, offset, "window")
        if summary is None:
            return
        self.counters["summaries"] += 1
        self._writer.saw_producers(summary.producers, summary.window_end)
        self.completion.add(summary)
        await self.on_tick()

    async def on_early_summary(self, raw: bytes | None, offset: int) -> None:
        summary = self._decode(raw, offset, "early")
        if summary is None:
            return
        self.counters["early_summaries"] += 1
        if self._settings.early_reaction:
            await self._early.on_summary(summary)

    async def on_tick(self) -> None:
        for window in self.completion.ready(int(time.time() * 1000)):
            await self._cycle(window)
        await self._early.on_tick()

    def _decode(self, raw: bytes | None, offset: int, kind: str) -> WindowSummary | None:
        try:
            return WindowSummary.from_record(self._summaries.decode(raw))
        except (DecodeError, KeyError, ValueError, TypeError) as exc:
            self.counters["summaries_undecodable"] += 1
            log.error("control offset %d: undecodable %s summary skipped: %s", offset, kind, exc)
            return None

    async def _cycle(self, window: CompleteWindow) -> None:
        started = time.perf_counter()
        rates, residual = window_rates(window)
        if self._settings.early_reaction:
            rates = self._early.weigh_surges(rates, window)
        inp = await window_input(window, rates, residual, self._writer, self._broker, self.policy)
        self.last_loads = inp.loads
        self.load_history.append((window.window_end, inp.loads))
        try:
            result: Plan = await asyncio.to_thread(plan, inp)
        except Exception:
            # A planner bug must not take the single writer (operator commands) down with it.
            self.counters["planner_errors"] += 1
            log.exception("planner failed on window %d; no changes this cycle", window.window_start)
            return
        await self._changes.apply(inp, result.changes)
        self._writer.save_history(result.history)
        await self._early.after_window(inp)
        self.counters["cycles"] += 1
        self.counters["incomplete_cycles"] += 0 if window.complete else 1
        self.counters["tenants_tracked"] = len(rates)
        self.counters["last_cycle_ms"] = (time.perf_counter() - started) * 1000
        self.last_window = window
        if not window.complete:
            log.warning(
                "planned window %d without usage partitions %s (they did not report within %d ms)",
                window.window_start,
                list(window.missing_partitions),
                self._settings.planner_max_wait_ms,
            )
