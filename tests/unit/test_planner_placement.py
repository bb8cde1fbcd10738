"""The planner's placement state: the views it answers from a one-pass grouping of the rates
(parts, members, pieces) and the per-partition figures it keeps between moves (headroom,
scores, orders), against the same figures computed from scratch, as built and after moves."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from routing_app.client.partitioner import java_partition
from routing_app.planner import PlannerInput, ReasonKind, apply_changes, usable_partitions
from routing_app.planner.cycle import placements
from routing_app.planner.loads import clean
from routing_app.planner.placement import Budget, Placement
from tests.unit.test_planner import FAST, NOW, inputs


def reference_parts(inp: PlannerInput, state: Placement) -> dict[str, tuple[int, ...]]:
    """Where every tenant is once the changes so far apply: its usable route, else its murmur2
    home if it sends anything."""
    routes = apply_changes(inp.routes, state.changes, NOW)
    out: dict[str, tuple[int, ...]] = {}
    for (topic, tenant), tr in inp.rates.items():
        if topic == state.name and clean(tr.records_per_s) > 0:
            out[tenant] = (java_partition(tenant.encode(), state.n),)
    for (topic, tenant), route in routes.items():
        if topic != state.name:
            continue
        placed = usable_partitions(route, state.n)
        if placed is not None:
            out[tenant] = placed
    return out


def check(inp: PlannerInput, state: Placement) -> None:
    parts = reference_parts(inp, state)
    assert dict(state.parts) == parts
    assert all(
        tenant in state.parts and state.parts.get(tenant) == placed for tenant, placed in parts.items()
    )
    for p in range(state.n):
        members = {t for t, placed in parts.items() if p in placed}
        assert state.members[p] == members
        pieces = sorted((state.rate(t) / len(parts[t]), t) for t in members)
        assert state.pieces_to_move(p) == [pair for pair in pieces if pair[0] >= state.min_move]
        assert sorted(state.pieces_on[p]) == sorted(piece for piece, _ in pieces)
        assert state.est[p] == math.fsum(piece for piece, _ in pieces) + state.residual[p]
        small = [piece for piece, _ in pieces if piece < state.min_move]
        assert state.fixed_load(p) == state.residual[p] + math.fsum(small)
        assert state.largest_piece(p) == max((piece for piece, _ in pieces), default=-math.inf)
        for factor in (state.settle_factor, state.trigger_factor, state.hot_factor):
            assert state.headroom(p, factor) == state._headroom(p, factor)
        assert state.score(p) == state._score(p)
    assert state.by_score() == sorted(state.active, key=state._score)
    clear = sorted(
        (state.fixed_load(q), state._score(q), q) for q in state.active if state.largest_piece(q) < state.unit
    )
    for p in range(state.n):
        expected = next(((fixed, q) for fixed, _, q in clear if q != p), None)
        assert state.least_fixed(p) == expected
    level = state.mean * 0.2
    assert set(state.heavier_than(level)) == {
        t for (topic, t), tr in inp.rates.items() if topic == state.name and clean(tr.records_per_s) > level
    }


def roomiest_from_scratch(state: Placement, tenant: str, pool: list[int], k: int) -> list[tuple[float, int]]:
    own = state.parts.get(tenant, ())
    piece = state.piece(tenant) if own else 0.0
    ranked = sorted(
        (-(state._headroom(p, state.settle_factor) + (piece if p in own else 0.0)), state._score(p), p)
        for p in pool
    )
    return [(-room, p) for room, _, p in ranked[:k]]


def best_fit_from_scratch(
    state: Placement, exclude: set[int], amount: float, factor: float | None, cap: float | None
) -> int | None:
    fits = [
        state._score(p)
        for p in state.active
        if p not in exclude
        and (factor is None or state._headroom(p, factor) >= amount)
        and (cap is None or state.est[p] + amount <= cap)
    ]
    return min(fits)[1] if fits else None


@FAST
@given(inputs(budget=10_000), st.data())
def test_the_placement_answers_as_from_scratch_as_built_and_after_moves(
    inp: PlannerInput, data: st.DataObject
) -> None:
    for state in placements(inp, Budget(10_000), []):
        check(inp, state)
        tenants = sorted(set(state.parts) | set(state.routes))
        for _ in range(data.draw(st.integers(0, 4)) if tenants and state.active else 0):
            tenant = data.draw(st.sampled_from(tenants))
            if data.draw(st.booleans()):
                state.move(tenant, None, ReasonKind.COOLED, "test", {})
            else:
                new = data.draw(
                    st.lists(
                        st.sampled_from(state.active), min_size=1, max_size=len(state.active), unique=True
                    )
                )
                state.move(tenant, tuple(new), ReasonKind.OVER_MEAN, "test", {})
            check(inp, state)
            # The searches over the kept figures find what a search over fresh ones finds.
            pool = data.draw(st.lists(st.sampled_from(range(state.n)), unique=True))
            k = data.draw(st.integers(0, state.n + 1))
            probe = data.draw(st.sampled_from(tenants))
            assert state.roomiest_for(probe, pool, k) == roomiest_from_scratch(state, probe, pool, k)
            amount = data.draw(st.floats(0.0, 3 * max(state.mean, 1.0)))
            exclude = set(data.draw(st.lists(st.sampled_from(range(state.n)))))
            factor = data.draw(st.sampled_from([None, state.settle_factor, state.hot_factor]))
            cap = data.draw(st.none() | st.floats(0.0, 3 * max(state.mean, 1.0)))
            assert state.best_fit(exclude, amount, factor, cap=cap) == best_fit_from_scratch(
                state, exclude, amount, factor, cap
            )
