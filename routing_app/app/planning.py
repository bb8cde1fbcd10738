"""The planning loop, run by the control agent (so the planner is also the single writer).

Window summaries and ticks arrive on the control topic. Once a window is complete (every usage
partition closed it) or overdue, the loop gathers the planner's input (rates from the window,
routes and state from the writer's tables, load and lag from the broker), calls the pure
``plan``, and writes each change through the writer with the next epoch.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from typing import Any

from routing_app.app.writer import RouteWriter
from routing_app.codec import AvroCodec, DecodeError
from routing_app.config import ConfigError, Settings
from routing_app.control import decide_planned
from routing_app.load import PartitionLoadSampler, consumer_lag
from routing_app.planner import (
    PartitionLoad,
    Plan,
    PlannerInput,
    Policy,
    TenantRate,
    plan,
)
from routing_app.routes.model import route_key
from routing_app.windows import CompleteWindow, WindowCompletion, WindowSummary

log = logging.getLogger(__name__)

LOAD_HISTORY_WINDOWS = 360


def policy_from_text(text: str) -> Policy:
    """``"partition_capacity=2000,min_dwell_s=20"`` -> Policy; names the bad part on error.

    Each value is converted to its field's declared type (int, float, bool, str); ``none`` is
    accepted for Optional fields only.
    """
    import types
    import typing

    hints = typing.get_type_hints(Policy)
    fields = {f.name for f in dataclasses.fields(Policy) if f.init}
    changes: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, raw = part.partition("=")
        name = name.strip()
        if not sep or name not in fields:
            raise ConfigError(f"planner_policy: {part!r} is not name=value with a Policy field "
                              f"({', '.join(sorted(fields))})")
        kind, value = hints[name], raw.strip()
        optional = False
        if typing.get_origin(kind) in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(kind) if a is not type(None)]
            optional = len(members) < len(typing.get_args(kind))
            kind = members[0] if len(members) == 1 else kind
        try:
            if value.lower() == "none":
                if not optional:
                    raise ValueError(f"{name} cannot be none")
                changes[name] = None
            elif kind is bool:
                flag = value.lower()
                if flag not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                    raise ValueError(f"not a boolean: {value!r}")
                changes[name] = flag in ("true", "1", "yes", "on")
            elif kind in (int, float, str):
                changes[name] = kind(value)
            else:
                raise ValueError(f"{name} has type {kind}, which text cannot set")
        except ValueError as exc:
            raise ConfigError(f"planner_policy: {name}={raw!r}: {exc}") from exc
    return dataclasses.replace(Policy(), **changes)


class PlanningLoop:
    def __init__(self, settings: Settings, writer: RouteWriter, summary_codec: AvroCodec) -> None:
        self._settings = settings
        self._writer = writer
        self._summaries = summary_codec
        self.policy = policy_from_text(settings.planner_policy)
        self.completion = WindowCompletion(max_wait_ms=settings.planner_max_wait_ms)
        self._samplers: dict[str, PartitionLoadSampler] = {}
        self._lag_groups = [g.strip() for g in settings.lag_groups.split(",") if g.strip()]
        self.counters: dict[str, float] = {"summaries": 0, "summaries_undecodable": 0,
                                           "cycles": 0, "incomplete_cycles": 0,
                                           "last_cycle_ms": 0.0, "stale_decisions": 0, "planner_errors": 0,
                                           "tenants_tracked": 0}
        self.last_window: CompleteWindow | None = None
        self.last_loads: dict[tuple[str, int], PartitionLoad] = {}
        # (window end ms, loads sampled for it), newest last: partition load over time.
        self.load_history: deque[tuple[int, dict[tuple[str, int], PartitionLoad]]] = deque(
            maxlen=LOAD_HISTORY_WINDOWS)

    async def on_summary(self, raw: bytes | None, offset: int) -> None:
        try:
            summary = WindowSummary.from_record(self._summaries.decode(raw))
        except (DecodeError, KeyError, ValueError, TypeError) as exc:
            self.counters["summaries_undecodable"] += 1
            log.error("control offset %d: undecodable window summary skipped: %s", offset, exc)
            return
        self.counters["summaries"] += 1
        self._writer.saw_producers(summary.producers, summary.window_end)
        self.completion.add(summary)
        await self.on_tick()

    async def on_tick(self) -> None:
        for window in self.completion.ready(int(time.time() * 1000)):
            await self._cycle(window)

    async def _cycle(self, window: CompleteWindow) -> None:
        started = time.perf_counter()
        window_s = max((window.window_end - window.window_start) / 1000.0, 1e-3)
        streams = window.stream_totals()
        rates = {key: TenantRate(key[0], key[1], records / window_s, nbytes / window_s,
                                 *_stream_rate(streams.get(key), window_s))
                 for key, (records, nbytes) in window.tenant_totals().items()}
        residual = {key: records / window_s
                    for key, (records, _) in window.residual_totals().items() if key[1] >= 0}
        routes = self._writer.routes()
        topics = {t for t, _ in rates} | {t for t, _ in routes} | {t for t, _ in residual}
        counts = await self._writer.partition_counts(topics)
        loads = await asyncio.to_thread(self._sample_loads, sorted(counts), window)
        self.last_loads = loads
        self.load_history.append((window.window_end, loads))
        inp = PlannerInput(
            now_ms=window.window_end, partition_counts=counts,
            routes={k: r for k, r in routes.items() if k[0] in counts},
            rates={k: r for k, r in rates.items() if k[0] in counts},
            loads=loads, history=self._writer.history(), frozen=self._writer.frozen(),
            drained=self._writer.drained(),
            residual={k: v for k, v in residual.items() if k[0] in counts},
            policy=self.policy, complete=window.complete,
        )
        try:
            result: Plan = await asyncio.to_thread(plan, inp)
        except Exception:
            # A planner bug must not take the single writer (operator commands) down with it.
            self.counters["planner_errors"] += 1
            log.exception("planner failed on window %d; no changes this cycle",
                          window.window_start)
            return
        now = int(time.time() * 1000)
        for change in result.changes:
            key = (change.topic, change.tenant)
            current = self._writer.current(*key)
            seen = inp.routes.get(key)
            if (current.epoch if current else None) != (seen.epoch if seen else None):
                # The route changed after the planner looked: its reasoning is out of date.
                self.counters["stale_decisions"] += 1
                continue
            decision = decide_planned(change, current,
                                      self._writer.last_epoch(route_key(*key)),
                                      worker_id=self._writer.worker_id, now_ms=now)
            if decision is not None:
                await self._writer.apply(decision)
        self._writer.save_history(result.history)
        self.counters["cycles"] += 1
        self.counters["incomplete_cycles"] += 0 if window.complete else 1
        self.counters["tenants_tracked"] = len(rates)
        self.counters["last_cycle_ms"] = (time.perf_counter() - started) * 1000
        self.last_window = window
        if not window.complete:
            log.warning("planned window %d without usage partitions %s (they did not report "
                        "within %d ms)", window.window_start, list(window.missing_partitions),
                        self._settings.planner_max_wait_ms)

    def _sample_loads(self, topics: list[str], window: CompleteWindow
                      ) -> dict[tuple[str, int], PartitionLoad]:
        loads: dict[tuple[str, int], PartitionLoad] = {}
        for topic in topics:
            try:
                sampler = self._samplers.get(topic)
                if sampler is None:
                    sampler = self._samplers[topic] = PartitionLoadSampler(
                        self._settings.kafka, topic)
                # Over the planned window, like the tenants' rates, not since the last cycle.
                rates = sampler.rates_for_window(window.window_start, window.window_end)
                lag = consumer_lag(self._settings.kafka, self._lag_groups, topic,
                                   sampler.last_end_offsets())
            except Exception as exc:  # load is advice: plan on rates alone rather than stop
                log.warning("cannot sample load of %s: %s", topic, exc)
                continue
            for partition, rate in rates.items():
                loads[(topic, partition)] = PartitionLoad(topic, partition, rate,
                                                          lag.get(partition, 0))
        return loads


def _stream_rate(streams: tuple[int, int] | None, window_s: float) -> tuple[float | None, int]:
    """TenantRate's (top_stream_per_s, streams): None for a tenant that is one stream."""
    if streams is None:
        return None, 1
    return streams[0] / window_s, streams[1]
