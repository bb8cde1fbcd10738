"""Isolation: a tenant gets a partition of its own (or the one it shares least).

- ``isolate``, step 3: the dominant tenant of a hot partition moves where it stays below the
  hot level, preferably onto a partition without another heavy routed tenant;
- ``isolate_unsplittable``, from step 2: a strict tenant too big for a shard whose heaviest
  ordered stream is too, so shards would not split it.
"""

from __future__ import annotations

import math

from routing_app.planner import reasons
from routing_app.planner.model import ReasonKind
from routing_app.planner.placement import Placement


def isolate(state: Placement) -> bool:
    moved = False
    for p in state.hot(state.hot_factor):
        if not state.over(p, state.hot_factor):
            continue
        # "Fixes most of it": the tenant explains at least half of the excess.
        least = 0.5 * state.excess(p)
        tenant = _heaviest_single(state, p, least)
        if tenant is None:
            continue
        rate = state.rate(tenant)
        if rate < least:
            continue
        target = _isolation_target(state, p, tenant, rate)
        if target is None:
            continue
        reason = reasons.hot_partition(
            state.describe(p), tenant, rate, target, state.est[target], state.lag[target]
        )
        state.move(
            tenant, (target,), ReasonKind.HOT_PARTITION, reason, state.observed(tenant, (p,), (target,))
        )
        moved = True
    return moved


def _heaviest_single(state: Placement, p: int, least: float) -> str | None:
    """The heaviest movable tenant with a rate that is on p alone (ties: the first name), if
    it may send ``least`` or more."""
    best: tuple[float, str] | None = None
    # Heaviest piece first: a tenant on p alone has its whole rate as its piece, so once the
    # pieces fall below the best rate found, no later tenant can beat it; nor can any of the
    # tenants too small to move, unless none of the bigger ones qualifies.
    for piece, tenant in reversed(state.pieces_to_move(p)):
        if best is not None and piece < -best[0]:
            break
        if _single(state, tenant):
            key = (-state.rate(tenant), tenant)
            if best is None or key < best:
                best = key
    if best is None and least < state.min_move:
        # A partition that stays hot around a tenant at its cap (a shard of its heaviest
        # stream's size) is asked again every round: a scan of all its members only when a
        # tenant too small to move could still be the answer.
        singles = [t for t in state.members[p] if _single(state, t)]
        return min(singles, key=lambda t: (-state.rate(t), t)) if singles else None
    return None if best is None else best[1]


def _single(state: Placement, tenant: str) -> bool:
    return len(state.parts[tenant]) == 1 and state.rate(tenant) > 0 and state.movable(tenant)


def _isolation_target(state: Placement, p: int, tenant: str, rate: float) -> int | None:
    """Preferably a partition without another heavy routed tenant ("dedicated"), where the
    tenant stays below the hot level. A tenant hot on its own stays the maximum wherever it
    goes; it then takes the partition where the fewest others share its load, if that cuts
    the hot partition's load by settle_tolerance x mean when it leaves its hash partition,
    by the tolerance when it is routed already (it does not wander between equals)."""
    dedicated = [q for q in state.active if state.heavy[q] == 0]
    margin = state.policy.tolerance if tenant in state.routed else state.policy.settle_tolerance
    better = state.est[p] - margin * state.mean
    hot = state.hot_factor
    for factor, cap, only in (
        (hot, None, dedicated),
        (hot, None, None),
        (None, better, dedicated),
        (None, better, None),
    ):
        target = state.best_fit((p,), rate, factor, only, cap=cap)
        if target is not None:
            return target
    return None


def isolate_unsplittable(state: Placement, tenant: str, rate: float) -> None:
    """A strict tenant too big for one shard whose heaviest ordered stream is too: shards
    would carry that stream on one partition anyway, so it gets a partition of its own."""
    current = state.parts[tenant]
    if len(current) > 1:
        return  # already sharded (its streams each keep one shard): no more shards
    (p,) = current
    if state.members[p] == {tenant}:
        return  # alone already (routed or hashed): the best one partition can do
    # Worth a (draining) move only to a partition where it shares clearly less than here,
    # by the tolerance once routed: it then never wanders between equals. Staying under
    # the hot level is no reason to move: a partition of its own is the point. First where
    # the load no rebalance moves away (residual, tenants below min_move) is least, as
    # rebalancing then clears the rest; else where the whole load is clearly less.
    margin = (
        state.policy.tolerance if tenant in state.routed else state.policy.settle_tolerance
    ) * state.mean
    here = _unmovable(state, p, tenant)
    # Not onto another tenant bigger than a shard: rebalancing could not clear it away. The
    # tenant is on p alone, so elsewhere all of the partition's fixed load counts; the
    # best-ranked partition is the one to take, if any is clearly better than here.
    best = state.least_fixed(p)
    target = best[1] if best is not None and best[0] < here - margin else None
    if target is None:
        target = state.best_fit((p,), rate, None, None, cap=state.est[p] - margin)
    if target is None:
        return
    top = state.heaviest_stream(tenant)
    reason = reasons.unsplittable(
        tenant, rate, state.unit, top, state.streams(tenant), target, state.est[target]
    )
    observed = state.observed(tenant, (p,), (target,))
    observed["top_stream_rate"] = top
    state.move(tenant, (target,), ReasonKind.UNSPLITTABLE, reason, observed)


def _unmovable(state: Placement, p: int, tenant: str) -> float:
    """The load on p that rebalancing would leave there: residual and tenants too small
    to move (below min_move), the tenant itself aside."""
    low = state.min_move
    small = [piece for piece in state.pieces_on[p] if piece < low]
    own = state.piece(tenant)
    if own < low:
        small.remove(own)  # the tenant's own piece, one of p's pieces
    return state.residual[p] + math.fsum(small)
