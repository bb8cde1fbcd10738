"""Step 5, rebase (``routing-app topics rebase``, after ``topics expand``): every hashed tenant
that hashes elsewhere by the partition count than by the topic's base moves there (a strict
drain, within the cycle's move budget), heaviest first; once none is left and no move of the
topic is still draining, the base is dropped and unrouted keys hash by the count again.

Only tenants seen sending in the window are known: a key that sent nothing then changes
partition unobserved when the base goes (it has no records in flight to reorder)."""

from __future__ import annotations

from routing_app.client.partitioner import java_partition
from routing_app.planner import reasons
from routing_app.planner.model import PlannedChange, ReasonKind
from routing_app.planner.placement import Placement
from routing_app.routes.model import HASH_BASE_TENANT, RouteStatus


def rebase(state: Placement) -> None:
    if not state.rebasing or state.base_draining:
        return
    base, n = state.modulus, state.n
    blocked = False
    hashed = [
        tenant
        for names in state.tenants.names
        for tenant in names
        if tenant not in state.routed and tenant not in state.changed
    ]
    for tenant in state.by_rate(hashed):
        base_home = state.hash_of(tenant)
        home = java_partition(tenant.encode(), n)
        if home == base_home:
            continue
        if not state.movable(tenant) or home in state.evacuated:
            blocked = True  # frozen, dwelling, or its home is being evacuated: a later cycle
            continue
        reason = reasons.rebase_home(tenant, state.rate(tenant), base, n, base_home, home)
        state.move(
            tenant, (home,), ReasonKind.REBASE_HOME, reason, state.observed(tenant, (base_home,), (home,))
        )
        blocked = True  # its drain has to end before the base goes
    draining = any(route.status is RouteStatus.DRAINING for route in state.routes.values())
    if blocked or draining:
        return
    state.budget.take()
    state.changes.append(
        PlannedChange(
            state.name,
            HASH_BASE_TENANT,
            ReasonKind.BASE_DROPPED.action,
            None,
            reasons.base_dropped(base, n),
            {"base": float(base), "partitions": float(n)},
            kind=ReasonKind.BASE_DROPPED,
        )
    )
