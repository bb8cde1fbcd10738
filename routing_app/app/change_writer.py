"""Writing a plan's changes through the route writer, for the window cycle and the early path.

Apart because both paths write the same way: a change is written only while the route is still
the one the planner saw (with the next epoch, by ``control.decide_planned``), and an early plan
keeps only the history of the tenants it moved.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping, Sequence

from routing_app.app.writer import RouteWriter
from routing_app.control import decide_planned
from routing_app.planner import Plan, PlannedChange, PlannerInput
from routing_app.routes.model import HASH_BASE_TENANT, RouteStatus, route_key


class ChangeWriter:
    """Counts ``stale_decisions`` in the planning loop's ``counters`` (shared with it)."""

    def __init__(self, writer: RouteWriter, counters: MutableMapping[str, float]) -> None:
        self._writer = writer
        self._counters = counters

    async def apply(self, inp: PlannerInput, changes: Sequence[PlannedChange]) -> list[PlannedChange]:
        """Writes the changes whose route is still the one the planner saw; returns them."""
        now = _now_ms()
        applied = []
        for change in changes:
            key = (change.topic, change.tenant)
            current = self._writer.current(*key)
            if change.tenant == HASH_BASE_TENANT:
                # A rebase's end: the planner saw the base (inp.hash_bases), not as a route.
                stale = current is None or current.status is not RouteStatus.ACTIVE
            else:
                seen = inp.routes.get(key)
                stale = (current.epoch if current else None) != (seen.epoch if seen else None)
            if stale:
                # The route changed after the planner looked: its reasoning is out of date.
                self._counters["stale_decisions"] += 1
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

    def keep_history(self, result: Plan, applied: list[PlannedChange]) -> None:
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


def _now_ms() -> int:
    return int(time.time() * 1000)
