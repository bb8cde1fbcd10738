"""Step 1, evacuate: tenants on a partition an operator is evacuating, or on a route the
producer cannot use (a partition that does not exist, one named twice), move to the partitions
with the most room."""

from __future__ import annotations

from routing_app.planner import reasons
from routing_app.planner.model import ReasonKind
from routing_app.planner.placement import Placement


def evacuate(state: Placement) -> None:
    leaving: set[str] = set(state.broken)
    for p in state.evacuated:
        leaving |= state.members[p]
    for tenant in state.by_rate(leaving):
        if state.movable(tenant):
            _evacuate_one(state, tenant)


def _evacuate_one(state: Placement, tenant: str) -> None:
    n, rate = state.n, state.rate(tenant)
    route = state.routes.get(tenant)
    if tenant in state.broken and route is not None:
        base = list(dict.fromkeys(route.partitions))
    elif tenant in state.routed or rate > 0:
        base = list(state.parts[tenant])
    else:
        return
    bad = [p for p in base if not 0 <= p < n or p in state.evacuated]
    keep = [p for p in base if 0 <= p < n and p not in state.evacuated]
    missing = max(len(base), 1) - len(keep)
    if missing <= 0 and tenant not in state.broken:
        return
    source = list(state.parts.get(tenant, ()))
    own = set(keep)
    pool = [p for p in state.active if p not in own]
    added = [p for _, p in state.roomiest_for(tenant, pool, missing)]
    new = tuple(keep + added)
    if not new:
        return  # nowhere to go: every partition is being evacuated
    if any(not 0 <= p < n for p in bad):
        kind = ReasonKind.PARTITION_MISSING
    elif bad:
        kind = ReasonKind.PARTITION_EVACUATED
    else:
        # A broken route with nothing missing or evacuated repeats a partition (or names none).
        kind = ReasonKind.DUPLICATE_PARTITION
    reason = reasons.evacuate(tenant, rate, bad, n, route.partitions if route else (), added or new)
    state.move(tenant, new, kind, reason, state.observed(tenant, source, added))
