"""The planning loop's early path: its state (the surges not planned yet, the surging tenants'
recent rates, the partitions still crowded) and the plans it makes between windows.

An early summary (a tenant surging before its window closes, ``windows/early.py``) is planned at
once on the last window's input, shaped by ``app/early.py`` so that only the surging tenants
move; then any partition such a tenant crowds is relieved of its other tenants (also after every
window, for the routed tenants). Apart from ``planning.py`` because it is a protocol with its
own state and clock; the loop only tells it when summaries, windows and ticks arrive.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import MutableMapping

from routing_app.app import early
from routing_app.app.change_writer import ChangeWriter
from routing_app.app.writer import RouteWriter
from routing_app.config import Settings
from routing_app.planner import Plan, PlannerInput, TenantRate, plan
from routing_app.planner.model import TenantKey
from routing_app.windows import CompleteWindow, WindowSummary

log = logging.getLogger(__name__)

# Early plans at most this often: surges that arrive meanwhile wait for the next tick.
EARLY_MIN_GAP_MS = 1000


class EarlyPath:
    """Counts into the planning loop's ``counters`` (shared with it): ``early_cycles``,
    ``early_changes``, ``relieve_changes``, ``early_without_window``, ``planner_errors``."""

    def __init__(
        self,
        settings: Settings,
        writer: RouteWriter,
        changes: ChangeWriter,
        counters: MutableMapping[str, float],
    ) -> None:
        self._settings = settings
        self._writer = writer
        self._changes = changes
        self._counters = counters
        # The last window's input, which early plans start from.
        self.last_input: PlannerInput | None = None
        # The surging tenants' recent rates, each with the wall time until which it stands in
        # for the windows' rates and the end of the reports that showed it (a window starting
        # after that has the rate itself); the surges not planned yet.
        self._surging: dict[TenantKey, tuple[TenantRate, int, int]] = {}
        self._early_due: set[TenantKey] = set()
        self._last_early_ms = 0
        # Tenants whose partition was relieved and may need more (a plan's moves are bounded by
        # max_moves_per_cycle): relieved again on the next ticks until it is done.
        self._crowding: set[TenantKey] = set()

    # -- what the loop tells it ---------------------------------------------------------------
    async def on_summary(self, summary: WindowSummary) -> None:
        """An early summary's surges: due for an early plan, at their rates until the cooldown."""
        until = _now_ms() + self._settings.early_cooldown_ms
        for key, rate in early.surge_rates(summary).items():
            self._surging[key] = (rate, until, summary.window_end)
            self._early_due.add(key)
        await self._early_cycle()

    async def on_tick(self) -> None:
        """Plans the surges still due, else relieves the partitions still crowded."""
        if self._early_due:
            await self._early_cycle()
        elif self._crowding and self.last_input is not None and self._settings.early_reaction:
            now = _now_ms()
            if now - self._last_early_ms >= EARLY_MIN_GAP_MS:
                self._last_early_ms = now
                await self._relieve(self.last_input, self._surge_rates(), set(self._crowding))

    def weigh_surges(
        self, rates: dict[TenantKey, TenantRate], window: CompleteWindow
    ) -> dict[TenantKey, TenantRate]:
        """``window``'s rates with the surges seen before it ended at their recent rate, not at
        the window's average of before and after; a window wholly after a surge has the rate."""
        for key in [k for k, (_, _, seen) in self._surging.items() if seen <= window.window_start]:
            del self._surging[key]
        return early.with_surges(rates, self._surge_rates())

    async def after_window(self, inp: PlannerInput) -> None:
        """A window was planned on ``inp``: early plans start from it now. A move sized by a
        window's average can leave its tenant, grown since, crowding the partition it went to:
        relieve it now rather than after the dwell."""
        self.last_input = inp
        if self._settings.early_reaction:
            await self._relieve(inp, self._surge_rates(), set(inp.routes) | set(self._surging))

    # -- the plans it makes -------------------------------------------------------------------
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
        base = self.last_input
        if not due:
            return
        if base is None:
            # Nothing planned yet (a new writer): no picture of the other tenants to plan on.
            self._counters["early_without_window"] += len(due)
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
            hash_bases=self._writer.hash_bases(),
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
        applied = await self._changes.apply(inp, changes)
        self._changes.keep_history(result, applied)
        self._counters["early_cycles"] += 1
        self._counters["early_changes"] += len(applied)
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
            applied = await self._changes.apply(relieve, changes)
            self._changes.keep_history(result, applied)
            self._counters["relieve_changes"] += len(applied)
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
            hash_bases=self._writer.hash_bases(),
        )

    async def _plan(self, inp: PlannerInput, what: str) -> Plan | None:
        try:
            return await asyncio.to_thread(plan, inp)
        except Exception:
            # A planner bug must not take the single writer (operator commands) down with it.
            self._counters["planner_errors"] += 1
            log.exception("planner failed on %s; no changes", what)
            return None


def _now_ms() -> int:
    return int(time.time() * 1000)
