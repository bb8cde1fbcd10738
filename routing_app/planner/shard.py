"""Step 2, shard: a tenant above ``unit`` gets at least ``ceil(rate / unit)`` shards, grown
and shrunk with hysteresis, if shards split it (else ``isolate_unsplittable``). Also the last
resort of rebalancing (``split``): more shards for a tenant whose whole fits nowhere."""

from __future__ import annotations

import math

from routing_app.planner import reasons
from routing_app.planner.isolate import isolate_unsplittable
from routing_app.planner.model import ReasonKind
from routing_app.planner.placement import Placement


def shard(state: Placement) -> None:
    if not state.active:
        return  # every partition is being evacuated: nowhere to put anything
    grow_above = state.unit * (1 + state.policy.hysteresis)
    wanted = {t for t in state.heavier_than(grow_above) if t in state.parts}
    wanted.update(t for t in state.routed if len(state.parts[t]) > 1)
    wanted -= state.broken
    for tenant in state.by_rate(wanted):
        if state.movable(tenant):
            _reshard(state, tenant)


def _reshard(state: Placement, tenant: str) -> None:
    rate, current = state.rate(tenant), state.parts[tenant]
    cap = state.shard_cap(tenant)
    if cap < 2 and len(current) == 1:
        wanted = shard_count(state, rate, 1, state.max_shards)
        if wanted is not None and wanted > 1:
            isolate_unsplittable(state, tenant, rate)
        return
    count = shard_count(state, rate, len(current), cap)
    if count is None or count == len(current):
        return
    if count == 1 and rate < state.cool_level:
        return  # merging back will handle it; one move instead of two
    new = _placement(state, tenant, count, cap)
    if not new or new == current:
        return  # nowhere else to put a shard, or no room to shrink into
    count = len(new)
    if count > len(current):
        kind = ReasonKind.SHARD_GROW
        reason = reasons.shard_grow(tenant, rate, state.mean, state.unit, count, len(current))
    else:
        kind = ReasonKind.SHARD_SHRINK
        reason = reasons.shard_shrink(tenant, rate, state.unit, state.policy.hysteresis, count, len(current))
    observed = state.observed(tenant, current, new)
    observed["shards"] = float(count)
    state.move(tenant, new, kind, reason, observed)


def shard_count(state: Placement, rate: float, current: int, cap: int) -> int | None:
    """The new shard count for a tenant on ``current`` partitions, grown at most to ``cap``;
    None keeps it. The cap only stops growth: a list above it shrinks by the rate alone, as
    every change of a strict list is a move (a drain)."""
    unit, hyst = state.unit, state.policy.hysteresis
    if unit <= 0:
        return None
    desired = min(cap, max(1, math.ceil(rate / unit)))
    if current > state.max_shards:
        return desired
    if desired > current and rate > current * unit * (1 + hyst):
        return desired
    if desired < current and rate < (current - 1) * unit * (1 - hyst):
        return desired
    return None


def _placement(state: Placement, tenant: str, count: int, cap: int) -> tuple[int, ...]:
    """Where the tenant's shards go; ``count`` is what the hysteresis rule asks for, ``cap``
    the most that spread it."""
    current = [p for p in state.parts[tenant] if p not in state.evacuated]
    rate = state.rate(tenant)
    if count < len(current):
        # Fewer shards are only tidier: shrink as far as the bigger shares still fit on the
        # partitions kept (settled, below the rebalance trigger), so shrinking never makes
        # other tenants move.
        own = state.roomiest_for(tenant, current, len(current))
        forced = len(state.parts[tenant]) > state.max_shards
        for k in range(count, len(current)):
            if forced or own[k - 1][0] >= rate / k:
                kept = {p for _, p in own[:k]}
                # Surviving shards keep their order: fewer secondary keys change shard.
                return tuple(p for p in current if p in kept)
        return tuple(state.parts[tenant])
    owned = set(state.parts[tenant])
    pool = [p for p in state.active if p not in owned]
    ranked = state.roomiest_for(tenant, pool, len(pool))
    largest = min(cap, len(current) + len(ranked))
    # The smallest count from `count` up whose equal shares fit (settled) on the roomiest
    # partitions, so no other tenant has to move; else as many as allowed: a burst spread
    # thin costs this one move, where fewer, bigger shares on full partitions would push
    # dozens of tenants around (and back again when it ends). Shrinking (above) only undoes
    # it once there is room.
    for k in range(count, largest + 1):
        missing = k - len(current)
        if ranked[missing - 1][0] >= rate / k:
            return tuple(current + [p for _, p in ranked[:missing]])
    return tuple(current + [p for _, p in ranked[: largest - len(current)]])


def split(state: Placement, p: int) -> bool:
    """Last resort for a hot partition whose tenants fit nowhere whole: give one of them
    more shards so the smaller shares fit. Only tenants the shrink rule would keep on two
    or more shards: a smaller one would flip straight back."""
    big = state.unit * (1 - state.policy.hysteresis)
    if len(state.members[p]) == 1 and state.est[p] <= state.unit:
        # An isolated tenant within one shard's worth: the partition is hot, but it hurts
        # nobody else there, and splitting it would cost a move (a drain) to gain only a
        # lower max/mean.
        return False
    candidates = sorted(
        (
            t
            for t in state.members[p]
            if state.rate(t) > big and t not in state.broken and state.movable(t) and state.splittable(t)
        ),
        key=lambda t: (-state.piece(t), t),
    )
    for tenant in candidates:
        current, rate = state.parts[tenant], state.rate(tenant)
        cap = state.shard_cap(tenant)
        if len(current) >= cap:
            continue  # as spread as its streams allow
        own = set(current)
        ranked = state.roomiest_for(tenant, [q for q in state.active if q not in own], state.n)
        largest = min(cap, len(current) + len(ranked))
        for count in range(len(current) + 1, largest + 1):
            missing = count - len(current)
            if ranked[missing - 1][0] < rate / count:
                continue
            new = (*current, *(q for _, q in ranked[:missing]))
            reason = reasons.shard_split(state.describe(p), tenant, rate, count, len(current))
            observed = state.observed(tenant, (p,), new[len(current) :])
            observed["shards"] = float(count)
            state.move(tenant, new, ReasonKind.SHARD_SPLIT, reason, observed)
            return True
    return False
