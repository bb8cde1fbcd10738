"""The early path's planner inputs (app/early.py): the same ``plan``, acting only on a surge; a
partition that a tenant too big to share it crowds is relieved of its neighbours, and nothing
of that flaps back."""

from __future__ import annotations

import dataclasses

from routing_app.app.early import crowded, relieve_input, surge_input, surge_rates, with_surges
from routing_app.client.partitioner import java_partition
from routing_app.planner import PlannedChange, PlannerInput, Policy, TenantHistory, TenantRate, plan
from routing_app.planner.loads import estimate_loads
from routing_app.planner.routes import apply_changes
from routing_app.routes.model import Route
from routing_app.windows.early import Surge, early_summary

T = "orders"
N = 12
NOW = 10_000_000
# The demo's policy: tenant-hot (~340/s, twice the mean) is isolated, never sharded.
DEMO = Policy(
    partition_capacity=1000,
    shard_fill=5,
    tolerance=0.75,
    min_dwell_s=30,
    cooldown_s=20,
    merge_back_threshold=0.15,
)


def names_on(partition: int, count: int, prefix: str) -> list[str]:
    out: list[str] = []
    i = 0
    while len(out) < count:
        name = f"{prefix}-{i}"
        if java_partition(name.encode(), N) == partition:
            out.append(name)
        i += 1
    return out


def rates(values: dict[str, float]) -> dict[tuple[str, str], TenantRate]:
    return {(T, name): TenantRate(T, name, rate) for name, rate in values.items()}


def background(per_partition: float, tenants: int = 4, **special: float) -> dict[str, float]:
    """Every partition carries ``per_partition`` records/s of small tenants (``p<n>=rate``:
    partition n carries that instead)."""
    out = {}
    for p in range(N):
        load = special.get(f"p{p}", per_partition)
        for name in names_on(p, tenants, f"bg{p}"):
            out[name] = load / tenants
    return out


def window_input(
    values: dict[str, float], routes: dict[str, Route] | None = None, policy: Policy = DEMO, **changes: object
) -> PlannerInput:
    return PlannerInput(
        now_ms=NOW,
        partition_counts={T: N},
        routes={(T, k): r for k, r in (routes or {}).items()},
        rates=rates(values),
        loads={},
        policy=policy,
        **changes,  # type: ignore[arg-type]
    )


def loads_of(inp: PlannerInput) -> list[float]:
    loads = estimate_loads(inp.partition_counts, inp.routes, inp.rates, inp.residual)
    return [loads[(T, p)] for p in range(N)]


def test_an_early_plan_moves_the_surging_tenant_and_nobody_else() -> None:
    values = background(150.0, p7=30.0)
    (hot,) = names_on(2, 1, "hot")
    values[hot] = 20.0
    # Another partition above the rebalance trigger: a window plan would relieve it.
    (big,) = names_on(5, 1, "big")
    values[big] = 250.0
    base = window_input(values)
    assert any(c.tenant == big for c in plan(base).changes)  # what the early plan must not do

    surge = early_summary(Surge(1, T, hot, 340.0, 34_000.0, 340.0, 1, 20.0, NOW - 1000, NOW), 6, "w")
    surging = surge_rates(surge)
    assert surging[(T, hot)].records_per_s == 340.0
    inp = surge_input(
        base,
        surging,
        now_ms=NOW,
        routes=base.routes,
        rates=with_surges(base.rates, surging),
        frozen=frozenset(),
    )
    result = plan(inp)
    assert [(c.tenant, c.action.value) for c in result.changes] == [(hot, "isolate")]
    assert result.changes[0].partitions != (2,)


def test_a_recent_rate_below_the_windows_changes_nothing() -> None:
    base = window_input({"a": 300.0})
    merged = with_surges(base.rates, rates({"a": 200.0, "b": 50.0}))
    assert merged[(T, "a")].records_per_s == 300.0
    assert merged[(T, "b")].records_per_s == 50.0


def _crowded_demo() -> tuple[PlannerInput, str, int]:
    """tenant-hot, isolated at its ramp-up onto partition 0, has grown to 340/s there; its
    neighbours on 0 are small tenants (12/s: below what rebalancing moves, 0.19 x mean)."""
    values = background(150.0, tenants=6, p0=72.0)
    (hot,) = names_on(2, 1, "hot")
    values[hot] = 340.0
    routes = {hot: Route(T, hot, (0,), 1, updated_at_ms=NOW - 5_000)}  # in its dwell
    return window_input(values, routes), hot, 0


def test_a_window_plan_leaves_a_crowded_partition_as_it_is() -> None:
    """The state of the issue: partition 0 far above the hot level, and no window plan moves
    anything off it (the tenant dwells, its neighbours are too small for rebalancing)."""
    inp, _, p = _crowded_demo()
    loads = loads_of(inp)
    mean = sum(loads) / N
    assert loads[p] / mean > 2.3
    assert not [c for c in plan(inp).changes if p in (_source(inp, c.tenant))]


def relieved(inp: PlannerInput, hot: str, p: int) -> tuple[PlannerInput, list[PlannedChange]]:
    """Relieving until nothing moves (each plan within the policy's moves per cycle), as the
    planning loop does a second apart."""
    changes: list[PlannedChange] = []
    for _ in range(10):
        if crowded(inp, [(T, hot)]) != {(T, hot): p}:
            break
        result = plan(relieve_input(inp, (T, hot), p))
        if not result.changes:
            break
        assert len(result.changes) <= inp.policy.max_moves_per_cycle
        changes += result.changes
        inp = dataclasses.replace(inp, routes=apply_changes(inp.routes, result.changes, NOW))
    return inp, changes


def test_relieving_moves_the_neighbours_off_and_keeps_the_tenant() -> None:
    inp, hot, p = _crowded_demo()
    assert crowded(inp, [(T, hot)]) == {(T, hot): p}
    after, changes = relieved(inp, hot, p)
    moved = {c.tenant for c in changes}
    assert moved and hot not in moved
    assert all(_source(inp, t) == (p,) for t in moved)
    assert all(c.action.value == "rebalance" for c in changes)
    loads = loads_of(after)
    mean = sum(loads) / N
    assert loads[p] / mean < 2.3 < loads_of(inp)[p] / mean
    assert max(loads[q] for q in range(N) if q != p) < 1.75 * mean  # none made hot instead
    # Once relieved it is not crowded any more: nothing more moves.
    assert crowded(after, [(T, hot)]) == {}


def test_relieved_neighbours_do_not_merge_back_while_the_tenant_holds_the_partition() -> None:
    inp, hot, p = _crowded_demo()
    after, changes = relieved(inp, hot, p)
    routes = dict(after.routes)
    later = NOW + 120_000  # every dwell and cool-down long over
    routes = {k: dataclasses.replace(r, updated_at_ms=later - 60_000) for k, r in routes.items()}
    history = {k: TenantHistory(None, NOW) for k in routes}
    window = dataclasses.replace(inp, now_ms=later, routes=routes, history=history)
    assert not [c for c in plan(window).changes if c.action.value == "merge"]
    # ... and once it is gone (merged back and quiet), they do go home.
    values = {k[1]: r.records_per_s for k, r in inp.rates.items()}
    values[hot] = 5.0
    quiet = dataclasses.replace(
        window, rates=rates(values), routes={k: r for k, r in routes.items() if k[1] != hot}
    )
    merged = {c.tenant for c in plan(quiet).changes if c.action.value == "merge"}
    assert merged and merged <= {c.tenant for c in changes}


def test_a_tenant_that_alone_stays_below_the_merge_level_is_not_crowding() -> None:
    """There the window's rebalancing is the tool: relieving small tenants would let them merge
    straight back."""
    values = background(150.0, tenants=6)
    (hot,) = names_on(2, 1, "hot")
    values[hot] = 200.0  # 1.2 x the mean: below the demo's merge level (1.5 x)
    routes = {hot: Route(T, hot, (0,), 1, updated_at_ms=NOW - 5_000)}
    inp = window_input(values, routes)
    assert crowded(inp, [(T, hot)]) == {}


def test_a_sharded_tenant_is_never_crowding() -> None:
    values = background(150.0, tenants=6)
    values["wide"] = 2000.0
    inp = window_input(values, {"wide": Route(T, "wide", (0, 1), 1)})
    assert crowded(inp, [(T, "wide")]) == {}


def _source(inp: PlannerInput, tenant: str) -> tuple[int, ...]:
    route = inp.routes.get((T, tenant))
    return route.partitions if route else (java_partition(tenant.encode(), N),)
