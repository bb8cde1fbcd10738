"""Step 3, merge: a routed tenant cool (below merge_back_threshold x mean) for cooldown_s goes
back to hashing where its hash partition stays below the rebalance trigger; a cooled sharded
tenant whose hash partition has no room keeps one of its shards instead."""

from __future__ import annotations

from routing_app.planner import reasons
from routing_app.planner.model import ReasonKind
from routing_app.planner.placement import Placement


def merge(state: Placement, cool: list[str]) -> bool:
    """``cool``: the routed tenants that were cool when the cycle began."""
    moved = False
    cooldown_ms = state.policy.cooldown_s * 1000
    for tenant in cool:
        if tenant not in state.routed or not state.movable(tenant):
            continue
        since = state.cool_since(tenant)
        if since is None or state.now - since < cooldown_ms:
            continue
        home = state.hash_of(tenant)
        if home in state.evacuated:
            continue
        moved = _merge_one(state, tenant, home, (state.now - since) / 1000) or moved
    return moved


def _merge_one(state: Placement, tenant: str, home: int, cool_for_s: float) -> bool:
    rate, current = state.rate(tenant), state.parts[tenant]
    own_there = state.piece(tenant) if home in current else 0.0
    # Only where its hash partition stays below the rebalance trigger (and the hot
    # level): a merge must not make rebalancing or isolation move someone else.
    if rate <= 0 or state.headroom(home, state.merge_factor) + own_there >= rate:
        reason = reasons.cooled(
            tenant, rate, state.policy.merge_back_threshold, state.mean, cool_for_s, home, state.est[home]
        )
        state.move(tenant, None, ReasonKind.COOLED, reason, state.observed(tenant, current, (home,)))
        return True
    if len(current) < 2:
        return False
    ((room, keep),) = state.roomiest_for(tenant, list(current), 1)
    if room < rate:
        return False
    reason = reasons.cooled_kept_one_shard(
        tenant, rate, cool_for_s, home, state.est[home], keep, len(current)
    )
    observed = state.observed(tenant, current, (keep,))
    observed["shards"] = 1.0
    state.move(tenant, (keep,), ReasonKind.COOLED_KEPT_ONE_SHARD, reason, observed)
    return True
