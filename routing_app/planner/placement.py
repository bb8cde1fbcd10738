"""One data topic's placement while a plan is built: where every tenant is, the loads that
follow, how a partition scores as a target, and the one way to change it (``move``).

The planning steps (``drain``, ``shard``, ``isolate``, ``rebalance``, ``make_room``,
``merge``) read it and call ``move``; every move updates it at once, so the next decision sees
the load the last one left.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from routing_app.client.partitioner import java_partition
from routing_app.planner import reasons
from routing_app.planner.loads import homes, offset, shard_unit
from routing_app.planner.model import (
    PartitionLoad,
    PlannedChange,
    PlannerInput,
    ReasonKind,
)
from routing_app.planner.routes import is_pinned, usable_partitions
from routing_app.routes.model import Route, RouteMode, RouteStatus


class OutOfMoves(Exception):
    """The planner wanted one more change than the budget allows."""


class Budget:
    """The cycle's moves, shared by every topic (highest priority step first)."""

    def __init__(self, moves: int) -> None:
        self.left = max(0, moves)
        self.truncated = False

    def take(self) -> None:
        if self.left <= 0:
            raise OutOfMoves
        self.left -= 1


class Placement:
    """Loads are seen two ways: the estimate (rates placed by routes, plus residual) and, where
    the broker reported one, the measured write rate, each against its own mean. A partition
    is over a level when either view is; a target fits only where both views stay under it.
    """

    def __init__(self, name: str, n: int, inp: PlannerInput, budget: Budget,
                 changes: list[PlannedChange], rates: dict[str, float], routes: dict[str, Route],
                 residual: dict[int, float], loads: dict[int, PartitionLoad],
                 drained: set[int], streams: dict[str, tuple[float, int]]) -> None:
        self.name, self.n, self.policy, self.now = name, n, inp.policy, inp.now_ms
        self.inp, self.budget, self.changes = inp, budget, changes
        self.rates, self.routes = rates, routes
        # (heaviest stream's rate, streams) of tenants known to send several ordered streams.
        self.streams = streams
        self.drained = {p for p in drained if 0 <= p < n}
        self.active = [p for p in range(n) if p not in self.drained]
        self.residual = [residual.get(p, 0.0) for p in range(n)]
        self.lag = [float(max(0, loads[p].lag)) if p in loads else 0.0 for p in range(n)]
        self.changed: set[str] = set()

        # Effective placement: what the producer does today (a broken route hashes).
        self.parts: dict[str, tuple[int, ...]] = {}
        self.routed: set[str] = set()
        self.broken: set[str] = set()
        self.members: list[set[str]] = [set() for _ in range(n)]
        shares = self._place_tenants()
        # fsum: exact, so the same placement gives bit-identical loads whatever the input order
        # (and whether reached by moves within a plan or rebuilt from the applied routes).
        self.est = [math.fsum(shares[p]) + self.residual[p] for p in range(n)]
        total = math.fsum(rates.values()) + math.fsum(self.residual)
        self.mean = total / len(self.active) if self.active else 0.0
        # What the broker measured beyond (or short of) the estimate: traffic the rates do not
        # explain. It stays with its partition while tenants move, so the measured view of a
        # partition is always estimate + offset, against a mean shifted the same way.
        self.offset = [offset(loads[p].records_per_s, self.est[p]) if p in loads else 0.0
                       for p in range(n)]
        self.measured = any(self.offset[p] != 0.0 for p in self.active)
        self.meas_mean = (self.mean + math.fsum(self.offset[p] for p in self.active)
                          / len(self.active)) if self.measured else self.mean
        self._set_levels()
        # "Dedicated" targets carry no other routed tenant of this weight.
        self.heavy = [0] * n
        for tenant in self.routed:
            self._count_heavy(tenant, +1)
        self._roomiest: tuple[tuple[float, int], tuple[float, int]] | None = None

    def _place_tenants(self) -> list[list[float]]:
        """Fills parts, members, routed and broken; the rate shares on each partition."""
        n, rates, routes = self.n, self.rates, self.routes
        shares: list[list[float]] = [[] for _ in range(n)]
        # Locals: this loop runs once per tenant per cycle (100k tenants: most of plan's time).
        parts, members, memo = self.parts, self.members, homes(n)
        for tenant, rate in rates.items():
            if rate > 0 and tenant not in routes:
                p = memo.get(tenant)
                if p is None:
                    p = memo[tenant] = java_partition(tenant.encode(), n)
                parts[tenant] = (p,)
                members[p].add(tenant)
                shares[p].append(rate)
        for tenant, route in routes.items():
            rate = rates.get(tenant, 0.0)
            placed = usable_partitions(route, n)
            if placed is None:
                self.broken.add(tenant)
                if rate <= 0:
                    continue
                placed = (java_partition(tenant.encode(), n),)
            else:
                self.routed.add(tenant)
            parts[tenant] = placed
            for p in placed:
                members[p].add(tenant)
                shares[p].append(rate / len(placed))
        return shares

    def _set_levels(self) -> None:
        """The policy's levels, as factors of the mean and rates for this topic's mean."""
        policy = self.policy
        capacity = policy.partition_capacity
        self.floor = policy.hot_floor_fraction * capacity
        self.hot_factor = max(policy.hot_threshold, 1e-9)
        self.trigger_factor = 1 + policy.tolerance
        self.settle_factor = 1 + policy.settle_tolerance
        self.merge_factor = min(self.trigger_factor, self.hot_factor)
        self.cool_level = policy.merge_back_threshold * self.mean
        # Rebalancing moves no tenant the merge rule would send straight back: a moved tenant
        # stays above the cool level by the hysteresis (no rebalance -> merge flapping).
        self.min_move = max(policy.min_move_fraction,
                            policy.merge_back_threshold * (1 + policy.hysteresis)) * self.mean
        self.unit = shard_unit(policy, self.mean)
        cap = policy.max_shards if policy.max_shards is not None else self.n
        self.max_shards = max(1, min(cap, len(self.active)))

    # -- loads -----------------------------------------------------------------------------------

    def _views(self, p: int) -> tuple[tuple[float, float, bool], ...]:
        """(load, its mean, measured?) for each view of p."""
        if self.measured and self.offset[p] != 0.0:
            return ((self.est[p], self.mean, False),
                    (max(0.0, self.est[p] + self.offset[p]), self.meas_mean, True))
        return ((self.est[p], self.mean, False),)

    def headroom(self, p: int, factor: float) -> float:
        """How much more p takes before a view passes factor x its mean. Below the hot floor
        (scaled to the level, so settling stays below rebalancing) nothing is a problem."""
        floor = self.floor * factor / self.hot_factor
        return min(max(factor * mean, floor) - load for load, mean, _ in self._views(p))

    def over(self, p: int, factor: float) -> bool:
        return self.headroom(p, factor) < 0

    def excess(self, p: int) -> float:
        """Load above the mean, in the view where it is largest."""
        return max(load - mean for load, mean, _ in self._views(p))

    def ratio(self, p: int) -> float:
        return max((load / mean for load, mean, _ in self._views(p) if mean > 0), default=0.0)

    def hot(self, factor: float) -> list[int]:
        """The active partitions over factor x the mean, the most loaded first."""
        return sorted((p for p in self.active if self.over(p, factor)),
                      key=lambda p: (-self.ratio(p), p))

    def describe(self, p: int) -> str:
        load, mean, measured = max(self._views(p), key=lambda v: v[0] / v[1] if v[1] > 0 else 0.0)
        return reasons.partition_state(p, load, mean, measured)

    def score(self, p: int) -> tuple[float, int]:
        """Target preference: low load in either view (measured scaled to the estimate's mean),
        low lag (a backlog counts as the rate that clears it within lag_horizon_s), low number."""
        load = self.est[p]
        if self.measured and self.offset[p] != 0.0 and self.meas_mean > 0:
            load = max(load, (self.est[p] + self.offset[p]) * self.mean / self.meas_mean)
        return (load + self.lag[p] / max(self.policy.lag_horizon_s, 1e-9), p)

    def rate(self, tenant: str) -> float:
        return self.rates.get(tenant, 0.0)

    def heaviest_stream(self, tenant: str) -> float:
        """The rate of the tenant's heaviest ordered stream (all of it when unknown)."""
        known = self.streams.get(tenant)
        return self.rate(tenant) if known is None else known[0]

    def splittable(self, tenant: str) -> bool:
        """Whether shards spread the tenant: a relaxed one is round-robined, a strict one only
        by its streams, so its heaviest stream must fit in one shard's unit."""
        route = self.routes.get(tenant)
        if route is not None and route.mode is RouteMode.RELAXED:
            return True
        return self.heaviest_stream(tenant) <= self.unit

    def piece(self, tenant: str) -> float:
        return self.rate(tenant) / len(self.parts[tenant])

    def hash_of(self, tenant: str) -> int:
        memo = homes(self.n)
        home = memo.get(tenant)
        if home is None:
            home = memo[tenant] = java_partition(tenant.encode(), self.n)
        return home

    def by_rate(self, tenants: Iterable[str]) -> list[str]:
        """Heaviest first (ties by name, so a plan does not depend on input order)."""
        return sorted(tenants, key=lambda t: (-self.rate(t), t))

    # -- who may move ----------------------------------------------------------------------------

    def last_moved(self, tenant: str) -> int | None:
        hist = self.inp.history.get((self.name, tenant))
        last = hist.last_moved_ms if hist is not None else None
        route = self.routes.get(tenant)
        # A route's write time is a move too, and survives a worker that lost its history.
        if route is not None and route.updated_at_ms > 0:
            last = route.updated_at_ms if last is None else max(last, route.updated_at_ms)
        return last

    def movable(self, tenant: str) -> bool:
        if tenant in self.changed or (self.name, tenant) in self.inp.frozen:
            return False
        route = self.routes.get(tenant)
        # A route still draining is mid-move (strict mode waits for its old partition).
        if route is not None and (is_pinned(route) or route.status is not RouteStatus.ACTIVE):
            return False
        last = self.last_moved(tenant)
        return last is None or self.now - last >= self.policy.min_dwell_s * 1000

    def cool_since(self, tenant: str) -> int | None:
        """When the tenant's current cool spell started, if it is routed and cool now."""
        if tenant not in self.routed or self.rate(tenant) >= self.cool_level:
            return None
        hist = self.inp.history.get((self.name, tenant))
        since = hist.cool_since_ms if hist is not None else None
        return self.now if since is None else min(since, self.now)

    # -- where to --------------------------------------------------------------------------------

    def best_fit(self, exclude: Iterable[int], amount: float, factor: float | None,
                 only: Iterable[int] | None = None, extra: Mapping[int, float] | None = None,
                 cap: float | None = None) -> int | None:
        """The best-ranked partition taking ``amount`` with both views under factor x mean
        (and the estimate under ``cap``), or None."""
        skip = set(exclude)
        best: tuple[float, int] | None = None
        for p in (self.active if only is None else only):
            if p in skip:
                continue
            more = amount + (extra.get(p, 0.0) if extra else 0.0)
            if factor is not None and self.headroom(p, factor) < more:
                continue
            if cap is not None and self.est[p] + more > cap:
                continue
            key = self.score(p)
            if best is None or key < best:
                best = key
        return None if best is None else best[1]

    def roomiest_for(self, tenant: str, pool: Iterable[int], k: int) -> list[tuple[float, int]]:
        """The k partitions of pool with the most settle headroom, counting the tenant's own
        share as free: (headroom, partition), most first."""
        own = self.parts.get(tenant, ())
        piece = self.piece(tenant) if own else 0.0
        ranked = sorted((-(self.headroom(p, self.settle_factor) + (piece if p in own else 0.0)),
                         self.score(p), p) for p in pool)
        return [(-room, p) for room, _, p in ranked[:k]]

    def roomiest_except(self, p: int) -> float:
        """The most settle headroom on any active partition but p (a quick no-fit check)."""
        if self._roomiest is None:
            none = (-math.inf, -1)
            first, second = none, none
            for q in self.active:
                item = (self.headroom(q, self.settle_factor), -q)
                if item > first:
                    first, second = item, first
                elif item > second:
                    second = item
            self._roomiest = (first, second)
        first, second = self._roomiest
        return second[0] if first[1] == -p else first[0]

    # -- moving ----------------------------------------------------------------------------------

    def move(self, tenant: str, new_parts: tuple[int, ...] | None, kind: ReasonKind, reason: str,
             observed: dict[str, float]) -> None:
        """Record one change and apply it to the state (raises OutOfMoves when over budget)."""
        self.budget.take()
        old = self.parts.get(tenant, ())
        rate = self.rate(tenant)
        self._count_heavy(tenant, -1)
        for p in old:
            self.members[p].discard(tenant)
        placed = new_parts if new_parts is not None else (self.hash_of(tenant),)
        if new_parts is None:
            self.routed.discard(tenant)
        else:
            self.routed.add(tenant)
        self.broken.discard(tenant)
        if rate > 0 or new_parts is not None:
            self.parts[tenant] = placed
            for p in placed:
                self.members[p].add(tenant)
        else:
            self.parts.pop(tenant, None)
        self._count_heavy(tenant, +1)
        for p in set(old) | set(placed):
            self._refresh(p)
        self._roomiest = None
        self.changed.add(tenant)
        self.changes.append(PlannedChange(self.name, tenant, kind.action, new_parts, reason,
                                          {k: round(v, 3) for k, v in observed.items()},
                                          kind=kind))

    def observed(self, tenant: str, source: Iterable[int], target: Iterable[int]
                 ) -> dict[str, float]:
        """The figures a change carries (its event's ``observed``), before it moves."""
        src, dst = list(source), list(target)
        out = {
            "tenant_rate": self.rate(tenant),
            "from_load": max((self.est[p] for p in src), default=0.0),
            "to_load": max((self.est[p] for p in dst), default=0.0),
            "mean": self.mean,
            "lag": float(max((self.lag[p] for p in src), default=0.0)),
            "to_lag": float(max((self.lag[p] for p in dst), default=0.0)),
        }
        if self.measured:
            out["from_measured"] = max((self.est[p] + self.offset[p] for p in src), default=0.0)
            out["to_measured"] = max((self.est[p] + self.offset[p] for p in dst), default=0.0)
            out["measured_mean"] = self.meas_mean
        return out

    def _count_heavy(self, tenant: str, sign: int) -> None:
        if tenant in self.routed and self.rate(tenant) > 0 and self.piece(tenant) >= self.cool_level:
            for p in self.parts[tenant]:
                self.heavy[p] += sign

    def _refresh(self, p: int) -> None:
        self.est[p] = math.fsum([self.piece(t) for t in self.members[p]]) + self.residual[p]
