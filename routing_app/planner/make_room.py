"""Making room, for rebalancing: room is often scattered in slivers no tenant fits, so gather
one sliver-sized partition's worth by moving a few smaller tenants off one of the roomiest
partitions. Only smaller tenants leave, so every round consolidates room and nothing cycles."""

from __future__ import annotations

from bisect import bisect_left

from routing_app.planner.placement import Placement

# Making room for one tenant moves at most this many smaller ones.
MAX_EVICTIONS = 4

Eviction = tuple[str, float, int]  # (tenant, its piece, where it goes)


def make_room(
    state: Placement, p: int, order: list[tuple[float, str]]
) -> tuple[str, float, int, list[Eviction]] | None:
    """(tenant of ``order`` that then fits, its piece, the partition cleared for it, the
    evictions that clear it); nothing is moved yet. None when no candidate gets room."""
    for amount, tenant in order:
        own = set(state.parts[tenant])
        roomiest = state.roomiest_for(tenant, [q for q in state.active if q not in own], 3)
        for room, q in roomiest:
            evictions = _evictions(state, q, amount, amount - room, {p, q})
            if evictions is not None:
                return tenant, amount, q, evictions
    return None


def _evictions(state: Placement, q: int, below: float, need: float, avoid: set[int]) -> list[Eviction] | None:
    small = [(piece, t) for piece, t in state.pieces_to_move(q) if piece < below and state.movable(t)]
    extra: dict[int, float] = {}
    out: list[Eviction] = []
    while need > 0 and small and len(out) < MAX_EVICTIONS:
        cut = bisect_left(small, (need, ""))
        for size, t in small[cut:] + small[:cut][::-1]:
            dest = state.best_fit(avoid | set(state.parts[t]), size, state.settle_factor, extra=extra)
            if dest is not None:
                out.append((t, size, dest))
                extra[dest] = extra.get(dest, 0.0) + size
                small.remove((size, t))
                need -= size
                break
        else:
            return None
    return out if need <= 0 else None
