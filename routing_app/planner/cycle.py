"""One planning cycle: the input split per data topic into placements, the steps in priority
order (the move budget is shared, highest first), and the history carried to the next cycle."""

from __future__ import annotations

from routing_app.planner.evacuate import evacuate
from routing_app.planner.isolate import isolate
from routing_app.planner.loads import clean
from routing_app.planner.merge import merge
from routing_app.planner.model import (
    PartitionLoad,
    Plan,
    PlannedChange,
    PlannerInput,
    TenantHistory,
    TenantKey,
)
from routing_app.planner.placement import Budget, OutOfMoves, Placement
from routing_app.planner.rebalance import rebalance
from routing_app.planner.rebase import rebase
from routing_app.planner.shard import shard
from routing_app.planner.tenants import TopicTenants, group_tenants
from routing_app.routes.model import Route


def plan(inp: PlannerInput) -> Plan:
    """The changes for one complete window. Deterministic for the same input."""
    budget = Budget(inp.policy.max_moves_per_cycle)
    changes: list[PlannedChange] = []
    topics = placements(inp, budget, changes)
    try:
        for state in topics:
            evacuate(state)
        for state in topics:
            shard(state)
        for state in topics:
            # Settling can open room that step 2 found nowhere (an unsplittable tenant's
            # partition of its own): again until quiet, so that the plan, applied and planned
            # again, produces nothing. It ends: a tenant moves at most once per cycle.
            settle(state)
            while state.changed and _shard_again(state):
                settle(state)
        for state in topics:
            rebase(state)
    except OutOfMoves:
        budget.truncated = True
    return Plan(changes=tuple(changes), history=_history(inp, topics), truncated=budget.truncated)


def _shard_again(state: Placement) -> bool:
    before = len(state.changed)
    shard(state)
    return len(state.changed) > before


def settle(state: Placement) -> None:
    """Isolate, rebalance and merge until nothing changes."""
    # A later step can open room for an earlier one (a relieved source becomes a target);
    # looping until quiet is what makes a plan, applied and planned again, produce nothing.
    cool = sorted(t for t in state.routed if state.rate(t) < state.cool_level and t not in state.broken)
    complete = state.inp.complete
    while True:
        moved = isolate(state)
        if complete:
            moved = rebalance(state) or moved
            if not state.rebasing:  # a merge would hash by the base the rebase is dropping
                moved = merge(state, cool) or moved
        if not moved:
            return


def placements(inp: PlannerInput, budget: Budget, changes: list[PlannedChange]) -> list[Placement]:
    """One placement per data topic with tenants or routes, in topic order."""
    routes: dict[str, dict[str, Route]] = {}
    for (topic, tenant), route in inp.routes.items():
        routes.setdefault(topic, {})[tenant] = route
    tenants = group_tenants(inp.rates, routes, inp.partition_counts, inp.moduli())
    residual: dict[str, dict[int, float]] = {}
    for (topic, p), value in inp.residual.items():
        residual.setdefault(topic, {})[p] = clean(value)
    loads: dict[str, dict[int, PartitionLoad]] = {}
    for (topic, p), load in inp.loads.items():
        loads.setdefault(topic, {})[p] = load
    evacuated: dict[str, set[int]] = {}
    for topic, p in inp.evacuated:
        evacuated.setdefault(topic, set()).add(p)
    out = []
    for topic in sorted(set(tenants) | set(routes)):
        n = inp.partition_counts.get(topic, 0)
        if n <= 0:
            continue  # unknown topic: nothing can be placed, nothing is named
        out.append(
            Placement(
                topic,
                n,
                inp,
                budget,
                changes,
                tenants.get(topic) or TopicTenants.empty(n),
                routes.get(topic, {}),
                residual.get(topic, {}),
                loads.get(topic, {}),
                evacuated.get(topic, set()),
            )
        )
    return out


def _history(inp: PlannerInput, topics: list[Placement]) -> dict[TenantKey, TenantHistory]:
    dwell_ms = inp.policy.min_dwell_s * 1000
    planned = {state.name: state for state in topics}
    out: dict[TenantKey, TenantHistory] = {}
    for key, kept in inp.history.items():
        if key[0] not in planned:
            out[key] = kept  # a topic this cycle could not see: keep what we knew
    for state in topics:
        keys = set(state.routed) | state.changed
        keys.update(t for (topic, t) in inp.history if topic == state.name)
        for tenant in sorted(keys):
            hist = inp.history.get((state.name, tenant))
            if tenant in state.changed:
                last: int | None = state.now
            else:
                last = hist.last_moved_ms if hist is not None else None
                if last is not None and state.now - last >= dwell_ms:
                    last = None  # the dwell is over: nothing left to remember
            cool = state.cool_since(tenant)
            if tenant in state.changed and cool is not None:
                cool = state.now  # a new placement starts its cool-down afresh
            if last is not None or cool is not None:
                out[(state.name, tenant)] = TenantHistory(last_moved_ms=last, cool_since_ms=cool)
    return out
