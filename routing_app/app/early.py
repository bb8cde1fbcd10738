"""The early path's planner inputs: the same ``plan``, shaped so that it only acts on a surge.

Pure functions of the last window's PlannerInput and the writer's state now; the planning loop
(``app/early_path.py``) runs them when an early summary arrives and after every window.

- ``surge_input``: the last complete window with the surging tenants at their recent rate
  (never below what the window saw), incomplete (so no rebalance or merge back: windows decide
  those) and every other tenant frozen: only the surging tenants are isolated or sharded, by the
  planner's own rules, dwell and hysteresis.
- ``crowded``: a tenant that, alone, keeps its one partition above the level from which nothing
  merges back into it, while that partition is hot because of its neighbours too: the state a
  move sized by a window's average leaves behind when the tenant keeps growing.
- ``relieve_input``: moves the neighbours off such a partition (rebalance, over-mean), even the
  small ones the window path leaves alone because a merge would bring them straight back: here
  none can come back while the tenant stays (merging needs room below that level).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping

from routing_app.client.partitioner import java_partition
from routing_app.planner import PlannerInput, TenantRate
from routing_app.planner.loads import estimate_loads, homes
from routing_app.planner.model import TenantKey
from routing_app.planner.routes import usable_partitions
from routing_app.routes.model import Route
from routing_app.windows import WindowSummary


def surge_rates(summary: WindowSummary) -> dict[TenantKey, TenantRate]:
    """The rates an early summary reports: records over its span (see ``early_summary``)."""
    span_s = max(summary.window_end - summary.window_start, 1) / 1000.0
    out = {}
    for key, (records, nbytes) in summary.tenants.items():
        top = summary.streams.get(key)
        out[key] = TenantRate(
            key[0],
            key[1],
            records / span_s,
            nbytes / span_s,
            None if top is None else top[0] / span_s,
            top[1] if top is not None else 1,
        )
    return out


def with_surges(
    rates: Mapping[TenantKey, TenantRate], surging: Mapping[TenantKey, TenantRate]
) -> dict[TenantKey, TenantRate]:
    """The window's rates, with each surging tenant at its recent rate where that is higher."""
    out = dict(rates)
    for key, recent in surging.items():
        seen = out.get(key)
        if seen is None or recent.records_per_s > seen.records_per_s:
            out[key] = recent
    return out


def surge_input(
    base: PlannerInput,
    surging: Iterable[TenantKey],
    *,
    now_ms: int,
    routes: Mapping[TenantKey, Route],
    rates: Mapping[TenantKey, TenantRate],
    frozen: frozenset[TenantKey],
    **state: object,
) -> PlannerInput:
    """``base`` (the last window's input) for a plan that may move only ``surging`` tenants.
    ``rates``: ``with_surges`` of the window's; ``state``: the writer's history and
    evacuations now. Loads are left out: the broker's were measured before the surge."""
    movable = set(surging)
    others = (set(rates) | set(routes)) - movable
    return dataclasses.replace(
        base,
        now_ms=now_ms,
        routes=dict(routes),
        rates=dict(rates),
        loads={},
        frozen=frozenset(frozen | others),
        complete=False,
        **state,  # type: ignore[arg-type]
    )


def placement_of(
    key: TenantKey, route: Route | None, partitions: int, modulus: int | None = None
) -> tuple[int, ...]:
    """Where the producers send the tenant: its route's partitions, or its murmur2 home (by
    ``modulus``, the topic's hash base, where it has one)."""
    placed = usable_partitions(route, partitions) if route is not None else None
    if placed is not None:
        return placed
    by = partitions if modulus is None else modulus
    memo = homes(by)  # the planner's memo: hashing every tenant is the slow part
    home = memo.get(key[1])
    if home is None:
        home = memo[key[1]] = java_partition(key[1].encode(), by)
    return (home,)


def crowded(inp: PlannerInput, tenants: Iterable[TenantKey]) -> dict[TenantKey, int]:
    """The tenants of ``tenants`` on one partition that is hot, shared, and that they alone
    keep at or above the merge level (``min(1 + tolerance, hot_threshold) x mean``): tenant ->
    its partition."""
    policy = inp.policy
    loads = estimate_loads(inp.partition_counts, inp.routes, inp.rates, inp.residual, inp.moduli())
    out: dict[TenantKey, int] = {}
    for key in sorted(set(tenants)):
        n = inp.partition_counts.get(key[0], 0)
        rate = inp.rates.get(key)
        if n <= 0 or rate is None:
            continue
        parts = placement_of(key, inp.routes.get(key), n, inp.modulus(key[0]))
        if len(parts) != 1:
            continue  # sharded: its shares were placed to fit
        (p,) = parts
        active = [q for q in range(n) if (key[0], q) not in inp.evacuated]
        if not active:
            continue
        mean = math.fsum(loads[(key[0], q)] for q in active) / len(active)
        hot = max(policy.hot_threshold * mean, policy.hot_floor_fraction * policy.partition_capacity)
        alone = rate.records_per_s
        load = loads[(key[0], p)]
        merge_level = min(1 + policy.tolerance, policy.hot_threshold) * mean
        # Named neighbours, who can move (the residual cannot), beyond float noise.
        neighbours = load - alone - inp.residual.get((key[0], p), 0.0)
        if load > hot and alone >= merge_level and neighbours > 1e-6 * max(1.0, load):
            out[key] = p
    return out


def relieve_input(inp: PlannerInput, tenant: TenantKey, partition: int) -> PlannerInput:
    """``inp`` for a plan that moves only the other tenants off ``partition``, the tenant's
    (which stays), down to the smallest the policy ever moves (``min_move_fraction``)."""
    topic = tenant[0]
    n = inp.partition_counts.get(topic, 0)
    neighbours = {
        key
        for key in set(inp.rates) | set(inp.routes)
        if key[0] == topic
        and key != tenant
        and partition in placement_of(key, inp.routes.get(key), n, inp.modulus(topic))
    }
    everyone = set(inp.rates) | set(inp.routes)
    # merge_back_threshold 0: no merge in this plan, and rebalancing's smallest move is
    # min_move_fraction x mean (not the merge level: nothing merges back onto this partition
    # while the tenant holds it above that level, see ``crowded``).
    policy = dataclasses.replace(inp.policy, merge_back_threshold=0.0)
    return dataclasses.replace(
        inp, frozen=frozenset(inp.frozen | (everyone - neighbours)), complete=True, policy=policy
    )
