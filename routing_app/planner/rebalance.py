"""Step 3, rebalance: relieve partitions above mean x (1 + tolerance) down to
mean x (1 + settle_tolerance) with the fewest moves: the smallest tenant that fixes it alone,
else the largest that fits; if nothing fits whole, make room (``make_room``), or as a last
resort give a tenant more shards (``shard.split``). Never a tenant below ``min_move``, whom
the merge rule would send straight back."""

from __future__ import annotations

from bisect import bisect_left

from routing_app.planner import reasons
from routing_app.planner.make_room import make_room
from routing_app.planner.model import ReasonKind
from routing_app.planner.placement import Placement
from routing_app.planner.shard import split


def rebalance(state: Placement) -> bool:
    moved = False
    for p in state.hot(state.trigger_factor):
        moved = _relieve(state, p) or moved
    return moved


def _relieve(state: Placement, p: int) -> bool:
    """Move the fewest tenants (largest-first that fits) until p is back near the mean."""
    moved = False
    settle = state.settle_factor
    while state.over(p, settle):
        pieces = [(piece, t) for piece, t in state.pieces_to_move(p) if state.movable(t)]
        need = -state.headroom(p, settle)
        cut = bisect_left(pieces, (need, ""))
        # One tenant that fixes it alone (the smallest such), else the largest that fits.
        order = pieces[cut:] + pieces[:cut][::-1]
        choice = _direct_fit(state, p, order)
        if choice is not None:
            tenant, amount, target = choice
            _move(state, tenant, amount, p, target)
            moved = True
            continue
        made = make_room(state, p, order[:3])
        if made is None:
            if split(state, p):
                moved = True
                continue
            return moved
        tenant, amount, target, evictions = made
        why = reasons.making_room(tenant, amount, state.describe(p))
        for small, size, dest in evictions:
            _move(state, small, size, target, dest, why)
        _move(state, tenant, amount, p, target)
        moved = True
    return moved


def _direct_fit(state: Placement, p: int, order: list[tuple[float, str]]) -> tuple[str, float, int] | None:
    roomiest = state.roomiest_except(p)
    for amount, tenant in order:
        if amount > roomiest:
            continue
        target = state.best_fit(state.parts[tenant], amount, state.settle_factor)
        if target is not None:
            return tenant, amount, target
    return None


def _move(
    state: Placement, tenant: str, amount: float, source: int, target: int, making_room_why: str = ""
) -> None:
    """One shard (or the whole tenant) from source to target; ``making_room_why`` when it
    only moves aside for a bigger tenant from a hot partition."""
    new = tuple(target if old == source else old for old in state.parts[tenant])
    if making_room_why:
        kind, why = ReasonKind.MAKING_ROOM, making_room_why
    elif state.modulus <= target < state.n:
        # A partition `topics expand` added (no tenant hashes there yet): filling it.
        kind = ReasonKind.FILL
        why = reasons.filling(state.describe(source), state.modulus, state.n)
    else:
        kind, why = ReasonKind.OVER_MEAN, reasons.over_mean(state.describe(source), state.policy.tolerance)
    reason = reasons.moving(why, tenant, amount, len(new), target, state.est[target])
    state.move(tenant, new, kind, reason, state.observed(tenant, (source,), (target,)))
