"""The planner on a topic grown by ``routing-app topics expand``: unrouted tenants hash by the
topic's base, rebalancing fills the partitions added, and a rebase moves the hashed tenants
home by the partition count before it drops the base."""

from __future__ import annotations

from dataclasses import replace

from routing_app.planner import (
    HashBase,
    PlannerInput,
    Policy,
    ReasonKind,
    apply_changes,
    estimate_loads,
    plan,
)
from routing_app.routes.model import HASH_BASE_TENANT, RouteStatus
from tests.unit.test_planner import T, background, home, names_on, planner_input, route

DWELL = 300_000


def cycles(inp: PlannerInput, count: int) -> tuple[PlannerInput, list[ReasonKind]]:
    """``count`` planning cycles, each applied, the next one past the dwell; the kinds made."""
    kinds: list[ReasonKind] = []
    for _ in range(count):
        result = plan(inp)
        kinds += [c.kind for c in result.changes]
        routes = apply_changes(
            inp.routes, [c for c in result.changes if c.tenant != HASH_BASE_TENANT], inp.now_ms
        )
        bases = dict(inp.hash_bases)
        if any(c.kind is ReasonKind.BASE_DROPPED for c in result.changes):
            del bases[T]
        inp = replace(
            inp, routes=routes, history=result.history, hash_bases=bases, now_ms=inp.now_ms + DWELL + 1
        )
    return inp, kinds


def spread(inp: PlannerInput) -> float:
    est = estimate_loads(inp.partition_counts, inp.routes, inp.rates, moduli=inp.moduli())
    loads = [v for (topic, _), v in est.items() if topic == T]
    return max(loads) / (sum(loads) / len(loads))


def grown(before: int, after: int, per_partition: float = 1_000.0, per_tenant: float = 50.0) -> PlannerInput:
    tenants = background(before, dict.fromkeys(range(before), per_partition), per_tenant)
    # Capacity 1,500/s: the new partitions' mean (500/s) is no quiet cluster left alone.
    inp = planner_input(after, tenants, policy=Policy(max_moves_per_cycle=10, partition_capacity=1_500))
    return replace(inp, hash_bases={T: HashBase(before)})


def test_unrouted_tenants_are_placed_by_the_base_not_the_count() -> None:
    inp = grown(12, 24)
    assert inp.modulus(T) == 12
    assert spread(inp) == 2.0  # partitions 12..23 carry nothing yet
    assert spread(replace(inp, hash_bases={})) < 2.0  # the same tenants hashed by 24


def test_rebalancing_fills_the_added_partitions_to_the_policy_and_stops() -> None:
    inp, kinds = cycles(grown(12, 24), 30)
    assert spread(inp) <= 1.10, spread(inp)
    assert kinds and kinds[0] is ReasonKind.FILL
    assert set(kinds) <= {ReasonKind.FILL, ReasonKind.OVER_MEAN}
    # Every tenant moved got a route; the rest still hash by the base where they were.
    for (topic, tenant), routed in inp.routes.items():
        assert topic == T and routed.partitions != (home(tenant, 12),)
    # Settled: planning again changes nothing, and nothing is ever placed by % 24.
    assert plan(inp).changes == ()


def test_a_fill_moves_no_more_tenants_a_cycle_than_the_budget() -> None:
    inp = replace(grown(12, 24), policy=Policy(max_moves_per_cycle=3, partition_capacity=1_500))
    result = plan(inp)
    assert len(result.changes) == 3 and result.truncated
    assert all(c.kind is ReasonKind.FILL and c.partitions and c.partitions[0] >= 12 for c in result.changes)


def test_a_rebase_moves_the_hashed_tenants_home_by_the_count_then_drops_the_base() -> None:
    tenants = background(4, dict.fromkeys(range(4), 400.0), per_tenant=100.0)
    inp = planner_input(8, tenants, policy=Policy(max_moves_per_cycle=4))
    inp = replace(inp, hash_bases={T: HashBase(4, rebasing=True)})
    away = {t for t in tenants if home(t, 4) != home(t, 8)}
    assert away
    first = plan(inp)
    assert len(first.changes) == 4 and all(c.kind is ReasonKind.REBASE_HOME for c in first.changes)
    assert all(c.partitions == (home(c.tenant, 8),) for c in first.changes)
    inp, kinds = cycles(inp, 10)
    assert kinds.count(ReasonKind.REBASE_HOME) == len(away)
    assert kinds.count(ReasonKind.BASE_DROPPED) == 1 and kinds[-1] is ReasonKind.BASE_DROPPED
    assert T not in inp.hash_bases
    # Where every tenant is now is where murmur2 % 8 puts it: the base is not needed.
    for tenant in tenants:
        placed = inp.routes.get((T, tenant))
        assert (placed.partitions if placed else (home(tenant, 8),)) == (home(tenant, 8),)


def test_a_rebase_waits_for_moves_still_draining_and_for_the_base_itself() -> None:
    *stay, mover = [t for t in names_on(1, 4, 60, "stay") if home(t, 8) == 1][:4]
    moving = route(mover, (5,), status=RouteStatus.DRAINING)
    inp = planner_input(8, {**dict.fromkeys(stay, 100.0), mover: 100.0}, [moving])
    inp = replace(inp, hash_bases={T: HashBase(4, rebasing=True)})
    assert [c.kind for c in plan(inp).changes] == []
    done = replace(inp, routes={})
    assert [c.kind for c in plan(done).changes] == [ReasonKind.BASE_DROPPED]
    announcing = replace(done, hash_bases={T: HashBase(4, rebasing=True, draining=True)})
    assert plan(announcing).changes == ()


def test_no_merge_back_while_rebasing() -> None:
    # A cooled tenant would merge back to its home by the base, which the rebase is dropping.
    quiet = names_on(1, 8, 1, "quiet")[0]
    tenants = {**background(4, dict.fromkeys(range(4), 400.0)), quiet: 1.0}
    inp = planner_input(8, tenants, [route(quiet, (home(quiet, 8),), updated=1)])
    inp = replace(inp, hash_bases={T: HashBase(4)}, policy=Policy(cooldown_s=0, max_moves_per_cycle=0))
    from routing_app.planner.model import TenantHistory

    history = {(T, quiet): TenantHistory(last_moved_ms=1, cool_since_ms=1)}
    inp = replace(inp, history=history, policy=Policy(cooldown_s=0))
    merges = [c for c in plan(inp).changes if c.tenant == quiet]
    assert merges and merges[0].partitions is None
    rebasing = replace(inp, hash_bases={T: HashBase(4, rebasing=True)})
    assert [c for c in plan(rebasing).changes if c.tenant == quiet and c.partitions is None] == []
