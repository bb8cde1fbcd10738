"""The planning loop, run by the control agent (so the planner is also the single writer).

Window summaries and ticks arrive on the control topic. Once a window is complete (every usage
partition closed it) or overdue, the loop gathers the planner's input (rates from the window,
routes and state from the writer's tables, load and lag from the broker), calls the pure
``plan``, and writes each change through the writer with the next epoch.

Early summaries (a tenant surging before its window closes, ``windows/early.py``) are planned
at once on the last window's input, shaped by ``app/early.py`` so that only the surging tenants
move, and then any partition such a tenant crowds is relieved of its other tenants (also after
every window, for the routed tenants).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from typing import Any

from routing_app.app import early
from routing_app.app.writer import RouteWriter
from routing_app.codec import AvroCodec, DecodeError
from routing_app.config import ConfigError, Settings
from routing_app.control import decide_planned
from routing_app.load import PartitionLoadSampler, consumer_lag
from routing_app.planner import (
    PartitionLoad,
    Plan,
    PlannedChange,
    PlannerInput,
    Policy,
    TenantRate,
    plan,
)
from routing_app.planner.model import TenantKey
from routing_app.routes.model import route_key
from routing_app.windows import CompleteWindow, WindowCompletion, WindowSummary

log = logging.getLogger(__name__)

LOAD_HISTORY_WINDOWS = 360
# Early plans at most this often: surges that arrive meanwhile wait for the next tick.
EARLY_MIN_GAP_MS = 1000


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
            raise ConfigError(
                f"planner_policy: {part!r} is not name=value with a Policy field "
                f"({', '.join(sorted(fields))})"
            )
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
        self.last_window: CompleteWindow | None = None
        self.last_loads: dict[tuple[str, int], PartitionLoad] = {}
        # (window end ms, loads sampled for it), newest last: partition load over time.
        self.load_history: deque[tuple[int, dict[tuple[str, int], PartitionLoad]]] = deque(
            maxlen=LOAD_HISTORY_WINDOWS
        )
        # The early path: the last window's input; the surging tenants' recent rates, each with
        # the wall time until which it stands in for the windows' rates and the end of the
        # reports that showed it (a window starting after that has the rate itself); the
        # surges not planned yet.
        self._last_input: PlannerInput | None = None
        self._surging: dict[TenantKey, tuple[TenantRate, int, int]] = {}
        self._early_due: set[TenantKey] = set()
        self._last_early_ms = 0
        # Tenants whose partition was relieved and may need more (a plan's moves are bounded by
        # max_moves_per_cycle): relieved again on the next ticks until it is done.
        self._crowding: set[TenantKey] = set()

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

    async def on_early_summary(self, raw: bytes | None, offset: int) -> None:
        try:
            summary = WindowSummary.from_record(self._summaries.decode(raw))
        except (DecodeError, KeyError, ValueError, TypeError) as exc:
            self.counters["summaries_undecodable"] += 1
            log.error("control offset %d: undecodable early summary skipped: %s", offset, exc)
            return
        self.counters["early_summaries"] += 1
        if not self._settings.early_reaction:
            return
        until = _now_ms() + self._settings.early_cooldown_ms
        for key, rate in early.surge_rates(summary).items():
            self._surging[key] = (rate, until, summary.window_end)
            self._early_due.add(key)
        await self._early_cycle()

    async def on_tick(self) -> None:
        for window in self.completion.ready(int(time.time() * 1000)):
            await self._cycle(window)
        if self._early_due:
            await self._early_cycle()
        elif self._crowding and self._last_input is not None and self._settings.early_reaction:
            now = _now_ms()
            if now - self._last_early_ms >= EARLY_MIN_GAP_MS:
                self._last_early_ms = now
                await self._relieve(self._last_input, self._surge_rates(), set(self._crowding))

    async def _cycle(self, window: CompleteWindow) -> None:
        started = time.perf_counter()
        window_s = max((window.window_end - window.window_start) / 1000.0, 1e-3)
        streams = window.stream_totals()
        rates = {
            key: TenantRate(
                key[0],
                key[1],
                records / window_s,
                nbytes / window_s,
                *_stream_rate(streams.get(key), window_s),
            )
            for key, (records, nbytes) in window.tenant_totals().items()
        }
        residual = {
            key: records / window_s for key, (records, _) in window.residual_totals().items() if key[1] >= 0
        }
        if self._settings.early_reaction:
            # A surge seen before this window ended weighs at its recent rate, not at the
            # window's average of before and after; a window wholly after it has the rate.
            for key in [k for k, (_, _, seen) in self._surging.items() if seen <= window.window_start]:
                del self._surging[key]
            rates = early.with_surges(rates, self._surge_rates())
        routes = self._writer.routes()
        topics = {t for t, _ in rates} | {t for t, _ in routes} | {t for t, _ in residual}
        counts = await self._writer.partition_counts(topics)
        loads = await asyncio.to_thread(self._sample_loads, sorted(counts), window)
        self.last_loads = loads
        self.load_history.append((window.window_end, loads))
        inp = PlannerInput(
            now_ms=window.window_end,
            partition_counts=counts,
            routes={k: r for k, r in routes.items() if k[0] in counts},
            rates={k: r for k, r in rates.items() if k[0] in counts},
            loads=loads,
            history=self._writer.history(),
            frozen=self._writer.frozen(),
            evacuated=self._writer.evacuated(),
            residual={k: v for k, v in residual.items() if k[0] in counts},
            policy=self.policy,
            complete=window.complete,
        )
        try:
            result: Plan = await asyncio.to_thread(plan, inp)
        except Exception:
            # A planner bug must not take the single writer (operator commands) down with it.
            self.counters["planner_errors"] += 1
            log.exception("planner failed on window %d; no changes this cycle", window.window_start)
            return
        await self._apply(inp, result.changes)
        self._writer.save_history(result.history)
        self._last_input = inp
        if self._settings.early_reaction:
            # A move sized by a window's average can leave its tenant, grown since, crowding
            # the partition it went to: relieve it now rather than after the dwell.
            await self._relieve(inp, self._surge_rates(), set(inp.routes) | set(self._surging))
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

    async def _apply(
        self, inp: PlannerInput, changes: tuple[PlannedChange, ...] | list[PlannedChange]
    ) -> list[PlannedChange]:
        """Writes the changes whose route is still the one the planner saw; returns them."""
        now = _now_ms()
        applied = []
        for change in changes:
            key = (change.topic, change.tenant)
            current = self._writer.current(*key)
            seen = inp.routes.get(key)
            if (current.epoch if current else None) != (seen.epoch if seen else None):
                # The route changed after the planner looked: its reasoning is out of date.
                self.counters["stale_decisions"] += 1
                continue
            decision = decide_planned(
                change,
                current,
                self._writer.last_epoch(route_key(*key)),
                worker_id=self._writer.worker_id,
                now_ms=now,
            )
            if decision is not None:
                await self._writer.apply(decision)
                applied.append(change)
        return applied

    # -- the early path ----------------------------------------------------------------------
    def _surge_rates(self) -> dict[TenantKey, TenantRate]:
        """The surging tenants' recent rates that still stand (``early_cooldown_ms``)."""
        now = _now_ms()
        for key in [k for k, (_, until, _) in self._surging.items() if until < now]:
            del self._surging[key]
            self._early_due.discard(key)
        return {key: rate for key, (rate, _, _) in self._surging.items()}

    async def _early_cycle(self) -> None:
        now = _now_ms()
        if now - self._last_early_ms < EARLY_MIN_GAP_MS:
            return  # the next tick plans them
        surging = self._surge_rates()
        due = sorted(self._early_due & set(surging))
        self._early_due.clear()
        base = self._last_input
        if not due:
            return
        if base is None:
            # Nothing planned yet (a new writer): no picture of the other tenants to plan on.
            self.counters["early_without_window"] += len(due)
            return
        self._last_early_ms = now
        counts = dict(base.partition_counts)
        missing = {topic for topic, _ in due} - set(counts)
        if missing:
            counts.update(await self._writer.partition_counts(missing))
        routes = {k: r for k, r in self._writer.routes().items() if k[0] in counts}
        rates = early.with_surges(base.rates, {k: r for k, r in surging.items() if k[0] in counts})
        inp = early.surge_input(
            base,
            due,
            now_ms=now,
            routes=routes,
            rates=rates,
            frozen=self._writer.frozen(),
            history=self._writer.history(),
            evacuated=self._writer.evacuated(),
            partition_counts=counts,
        )
        result = await self._plan(inp, "an early plan")
        if result is None:
            return
        windows_rate = {k: base.rates[k].records_per_s if k in base.rates else 0.0 for k in due}
        # Round brackets: consoles that print reasons read square ones as markup (rich).
        changes = [
            dataclasses.replace(
                c,
                reason=f"{c.reason} (early: "
                f"{rates[(c.topic, c.tenant)].records_per_s:.0f}/s now, "
                f"{windows_rate.get((c.topic, c.tenant), 0.0):.0f}/s in "
                "the last window)",
            )
            for c in result.changes
            if (c.topic, c.tenant) in rates
        ]
        applied = await self._apply(inp, changes)
        self._keep_history(result, applied)
        self.counters["early_cycles"] += 1
        self.counters["early_changes"] += len(applied)
        for change in applied:
            log.info(
                "early plan: %s %s/%s -> %s", change.action, change.topic, change.tenant, change.partitions
            )
        await self._relieve(base, surging, set(due))

    async def _relieve(
        self, inp: PlannerInput, surging: dict[TenantKey, TenantRate], candidates: set[TenantKey]
    ) -> None:
        """Moves the other tenants off each partition one of ``candidates`` crowds. ``inp``: the
        last window's input, whose rates stand; not after an incomplete window, whose missing
        tenants look idle (the planner does not rebalance on such a picture either)."""
        if not inp.complete:
            return
        found = await asyncio.to_thread(early.crowded, self._now_input(inp, surging), candidates)
        self._crowding &= set(found)
        for key in sorted(found):
            # Again on the routes as they are now: relieving one partition changes others.
            current = self._now_input(inp, surging)
            partition = early.crowded(current, [key]).get(key)
            if partition is None:
                continue
            relieve = await asyncio.to_thread(early.relieve_input, current, key, partition)
            result = await self._plan(relieve, "relieving a crowded partition")
            if result is None:
                return
            rate = current.rates[key].records_per_s
            changes = [
                dataclasses.replace(
                    c,
                    reason=f"{c.reason} (moved off partition "
                    f"{partition}, which {key[1]} at {rate:.0f}/s fills)",
                )
                for c in result.changes
            ]
            applied = await self._apply(relieve, changes)
            self._keep_history(result, applied)
            self.counters["relieve_changes"] += len(applied)
            if applied:
                self._crowding.add(key)
            else:
                self._crowding.discard(key)
            for change in applied:
                log.info(
                    "relieving partition %d of %s/%s: %s %s -> %s",
                    partition,
                    *key,
                    change.action,
                    change.tenant,
                    change.partitions,
                )

    def _now_input(self, inp: PlannerInput, surging: dict[TenantKey, TenantRate]) -> PlannerInput:
        """``inp`` with the writer's routes and state now, the surging tenants' recent rates,
        and no broker loads (measured before the latest moves)."""
        return dataclasses.replace(
            inp,
            now_ms=_now_ms(),
            routes={k: r for k, r in self._writer.routes().items() if k[0] in inp.partition_counts},
            rates=early.with_surges(inp.rates, surging),
            loads={},
            history=self._writer.history(),
            frozen=self._writer.frozen(),
            evacuated=self._writer.evacuated(),
        )

    async def _plan(self, inp: PlannerInput, what: str) -> Plan | None:
        try:
            return await asyncio.to_thread(plan, inp)
        except Exception:
            # A planner bug must not take the single writer (operator commands) down with it.
            self.counters["planner_errors"] += 1
            log.exception("planner failed on %s; no changes", what)
            return None

    def _keep_history(self, result: Plan, applied: list[PlannedChange]) -> None:
        """The history of the tenants an early plan moved, and nobody else's: every other
        tenant's clocks stay the windows' to keep."""
        if not applied:
            return
        history = self._writer.history()
        for change in applied:
            key = (change.topic, change.tenant)
            kept = result.history.get(key)
            if kept is None:
                history.pop(key, None)
            else:
                history[key] = kept
        self._writer.save_history(history)

    def _sample_loads(
        self, topics: list[str], window: CompleteWindow
    ) -> dict[tuple[str, int], PartitionLoad]:
        loads: dict[tuple[str, int], PartitionLoad] = {}
        for topic in topics:
            try:
                sampler = self._samplers.get(topic)
                if sampler is None:
                    sampler = self._samplers[topic] = PartitionLoadSampler(self._settings.kafka, topic)
                # Over the planned window, like the tenants' rates, not since the last cycle.
                rates = sampler.rates_for_window(window.window_start, window.window_end)
                lag = consumer_lag(self._settings.kafka, self._lag_groups, topic, sampler.last_end_offsets())
            except Exception as exc:  # load is advice: plan on rates alone rather than stop
                log.warning("cannot sample load of %s: %s", topic, exc)
                continue
            for partition, rate in rates.items():
                loads[(topic, partition)] = PartitionLoad(topic, partition, rate, lag.get(partition, 0))
        return loads


def _now_ms() -> int:
    return int(time.time() * 1000)


def _stream_rate(streams: tuple[int, int] | None, window_s: float) -> tuple[float | None, int]:
    """TenantRate's (top_stream_per_s, streams): None for a tenant that is one stream."""
    if streams is None:
        return None, 1
    return streams[0] / window_s, streams[1]
