"""One data topic's placement while a plan is built: where every tenant is, the loads that
follow (how a partition scores as a target: ``figures``), and the one way to change it
(``move``).

The planning steps (``evacuate``, ``shard``, ``isolate``, ``rebalance``, ``make_room``,
``merge``) read it and call ``move``; every move updates it at once, so the next decision sees
the load the last one left.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence

from routing_app.planner.figures import PartitionFigures
from routing_app.planner.loads import offset, shard_unit
from routing_app.planner.model import (
    PartitionLoad,
    PlannedChange,
    PlannerInput,
    ReasonKind,
)
from routing_app.planner.routes import is_pinned, usable_partitions
from routing_app.planner.tenants import HomeOf, Members, Parts, RateOf, TopicTenants
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


class Placement(PartitionFigures):
    """Loads are seen two ways: the estimate (rates placed by routes, plus residual) and, where
    the broker reported one, the measured write rate, each against its own mean. A partition
    is over a level when either view is; a target fits only where both views stay under it.
    """

    def __init__(
        self,
        name: str,
        n: int,
        inp: PlannerInput,
        budget: Budget,
        changes: list[PlannedChange],
        tenants: TopicTenants,
        routes: dict[str, Route],
        residual: dict[int, float],
        loads: dict[int, PartitionLoad],
        evacuated: set[int],
    ) -> None:
        self.name, self.n, self.policy, self.now = name, n, inp.policy, inp.now_ms
        self.inp, self.budget, self.changes = inp, budget, changes
        self.tenants, self.routes = tenants, routes
        self._rate = RateOf(name, inp.rates, tenants.routed)
        # Unrouted tenants hash by the topic's base after `topics expand`, else by n.
        self.modulus = inp.modulus(name)
        hash_base = inp.hash_bases.get(name)
        self.rebasing = hash_base is not None and hash_base.rebasing
        self.base_draining = hash_base is not None and hash_base.draining
        self._home = HomeOf(self.modulus)
        self.evacuated = {p for p in evacuated if 0 <= p < n}
        self.active = [p for p in range(n) if p not in self.evacuated]
        self.residual = [residual.get(p, 0.0) for p in range(n)]
        self.lag = [float(max(0, loads[p].lag)) if p in loads else 0.0 for p in range(n)]
        self.changed: set[str] = set()

        # Effective placement: what the producer does today (a broken route hashes).
        self.parts = Parts(n, tenants.names, self._rate, self._home)
        self.routed: set[str] = set()
        self.broken: set[str] = set()
        self.members = Members(tenants.names)
        # Every tenant's piece on each partition, kept up to date by moves.
        self.pieces_on = shares = self._place_tenants()
        # fsum: exact, so the same placement gives bit-identical loads whatever the input order
        # (and whether reached by moves within a plan or rebuilt from the applied routes).
        self.est = [math.fsum(shares[p]) + self.residual[p] for p in range(n)]
        total = tenants.total() + math.fsum(self.residual)
        self.mean = total / len(self.active) if self.active else 0.0
        # What the broker measured beyond (or short of) the estimate: traffic the rates do not
        # explain. It stays with its partition while tenants move, so the measured view of a
        # partition is always estimate + offset, against a mean shifted the same way.
        self.offset = [offset(loads[p].records_per_s, self.est[p]) if p in loads else 0.0 for p in range(n)]
        self.measured = any(self.offset[p] != 0.0 for p in self.active)
        self.meas_mean = (
            (self.mean + math.fsum(self.offset[p] for p in self.active) / len(self.active))
            if self.measured
            else self.mean
        )
        self._set_levels()
        # "Dedicated" targets carry no other routed tenant of this weight.
        self.heavy = [0] * n
        for tenant in self.routed:
            self._count_heavy(tenant, +1)
        self._init_figures()
        self._pieces: list[list[tuple[float, str]] | None] = [None] * n
        self._touched: set[int] = set()  # partitions a move changed
        # movable(), but for the moves of this cycle (what holds all cycle, asked often).
        self._may_move: dict[str, bool] = {}

    def _place_tenants(self) -> list[Sequence[float]]:
        """Places the tenants with a route (the grouping has the hashed ones): fills parts,
        members, routed and broken; the rate shares on each partition."""
        n, parts, members = self.n, self.parts, self.members
        # The grouping's lists stay as they are: a partition's list is replaced, not changed.
        shares: list[Sequence[float]] = list(self.tenants.rates)
        extra: dict[int, list[float]] = {}
        for tenant, route in self.routes.items():
            rate = self.rate(tenant)
            placed = usable_partitions(route, n)
            if placed is None:
                self.broken.add(tenant)
                if rate <= 0:
                    continue
                placed = (self.hash_of(tenant),)
            else:
                self.routed.add(tenant)
            parts.set(tenant, placed)
            for p in placed:
                members.place_routed(p, tenant)
                extra.setdefault(p, []).append(rate / len(placed))
        for p, more in extra.items():
            shares[p] = [*shares[p], *more]
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
        self.min_move = (
            max(policy.min_move_fraction, policy.merge_back_threshold * (1 + policy.hysteresis)) * self.mean
        )
        if self.modulus < self.n:
            # Filling partitions `topics expand` added: half of every old partition has to move
            # and most tenants are small, so down to min_move_fraction. A merge back cannot undo
            # it: it lands only where its hash partition stays under the rebalance trigger.
            self.min_move = policy.min_move_fraction * self.mean
        self.unit = shard_unit(policy, self.mean)
        cap = policy.max_shards if policy.max_shards is not None else self.n
        self.max_shards = max(1, min(cap, len(self.active)))

    # -- tenants ---------------------------------------------------------------------------------

    def rate(self, tenant: str) -> float:
        return self._rate(tenant)

    def streams(self, tenant: str) -> tuple[float, int] | None:
        """(heaviest stream's rate, streams) if the tenant is known to send several."""
        return self._rate.streams(tenant)

    def heavier_than(self, level: float) -> list[str]:
        """The tenants sending more than ``level`` (in no particular order)."""
        return self.tenants.heavier_than(level)

    def heaviest_stream(self, tenant: str) -> float:
        """The rate of the tenant's heaviest ordered stream (all of it when unknown)."""
        known = self.streams(tenant)
        return self.rate(tenant) if known is None else known[0]

    def splittable(self, tenant: str) -> bool:
        """Whether shards spread the tenant (over two partitions at least)."""
        return self.shard_cap(tenant) >= 2

    def shard_cap(self, tenant: str) -> int:
        """The most shards that spread the tenant. A relaxed one is round-robined: any number.
        A strict one is spread by its streams, each on one shard: one shard when it is not
        known to send several (key-only records, or a producer that does not report streams);
        any number while its heaviest stream fits a shard's unit; else only as many as leave
        each shard at least that stream's rate (rate / heaviest stream). More would only thin
        the others around it, and the shares the planner counts (rate / shards) would
        understate that shard."""
        route = self.routes.get(tenant)
        if route is not None and route.mode is RouteMode.RELAXED:
            return self.max_shards
        known = self.streams(tenant)
        if known is None:
            return 1  # one ordered stream (or unknown): every shard but one would stay empty
        heaviest = known[0]
        if heaviest <= self.unit:
            return self.max_shards
        return max(1, min(self.max_shards, math.floor(self.rate(tenant) / heaviest + 1e-9)))

    def piece(self, tenant: str) -> float:
        return self.rate(tenant) / len(self.parts[tenant])

    def hash_of(self, tenant: str) -> int:
        return self._home(tenant)

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
        if tenant in self.changed:
            return False
        known = self._may_move.get(tenant)
        if known is None:
            known = self._may_move[tenant] = self._may_move_now(tenant)
        return known

    def _may_move_now(self, tenant: str) -> bool:
        """Whether the tenant may move, by what holds for the whole cycle: frozen, pinned,
        mid-move, dwelling."""
        if (self.name, tenant) in self.inp.frozen:
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

    def roomiest_for(self, tenant: str, pool: Iterable[int], k: int) -> list[tuple[float, int]]:
        """The k partitions of pool with the most settle headroom, counting the tenant's own
        share as free: (headroom, partition), most first."""
        own = self.parts.get(tenant, ())
        piece = self.piece(tenant) if own else 0.0
        rooms, scores, pool = self.rooms(self.settle_factor), self.scores(), set(pool)
        ranked = [(-(rooms[p] + piece), scores[p], p) for p in own if p in pool]
        # The other partitions of the pool in the order of all partitions by room: the k
        # first of them are all that can be among the k roomiest.
        others = 0
        for key in self._by_room():
            if others >= k:
                break
            if key[2] in pool and key[2] not in own:
                ranked.append(key)
                others += 1
        return [(-room, p) for room, _, p in heapq.nsmallest(k, ranked)]

    def pieces_to_move(self, p: int) -> list[tuple[float, str]]:
        """(piece, tenant) of the tenants on p big enough to move (at least min_move), in
        order. Most tenants of a partition are smaller: they are never paired up."""
        known = self._pieces[p]
        if known is None:
            low = self.min_move
            if p in self._touched:
                pairs = [(piece, t) for piece, t in map(self._piece_of, self.members[p]) if piece >= low]
            else:  # as grouped: a hashed tenant's piece is its rate
                pairs = [
                    (rate, t)
                    for rate, t in zip(self.tenants.rates[p], self.tenants.names[p], strict=True)
                    if rate >= low
                ]
                pairs.extend(
                    pair for pair in map(self._piece_of, self.members.routed_on(p)) if pair[0] >= low
                )
            known = self._pieces[p] = sorted(pairs)
        return known

    def _piece_of(self, tenant: str) -> tuple[float, str]:
        return self.piece(tenant), tenant

    # -- moving ----------------------------------------------------------------------------------

    def move(
        self,
        tenant: str,
        new_parts: tuple[int, ...] | None,
        kind: ReasonKind,
        reason: str,
        observed: dict[str, float],
    ) -> None:
        """Record one change and apply it to the state (raises OutOfMoves when over budget)."""
        self.budget.take()
        old = self.parts.get(tenant, ())
        rate = self.rate(tenant)
        old_piece = rate / len(old) if old else 0.0
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
            self.parts.set(tenant, placed)
            for p in placed:
                self.members[p].add(tenant)
        else:
            self.parts.set(tenant, None)
        self._count_heavy(tenant, +1)
        now = self.parts.get(tenant, ())
        new_piece = rate / len(now) if now else 0.0
        for p in set(old) | set(placed):
            # The same multiset of pieces as the members give (each piece is computed the one
            # way), without asking every member for its piece.
            pieces = list(self.pieces_on[p])
            try:
                if p in old:
                    pieces.remove(old_piece)
                if p in now:
                    pieces.append(new_piece)
            except ValueError:  # pragma: no cover - only if a piece were computed another way
                pieces = [self.piece(t) for t in self.members[p]]
            self._refresh(p, pieces)
        self.changed.add(tenant)
        self.changes.append(
            PlannedChange(
                self.name,
                tenant,
                kind.action,
                new_parts,
                reason,
                {k: round(v, 3) for k, v in observed.items()},
                kind=kind,
            )
        )

    def observed(self, tenant: str, source: Iterable[int], target: Iterable[int]) -> dict[str, float]:
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

    def _refresh(self, p: int, pieces: list[float]) -> None:
        self.pieces_on[p] = pieces
        self.est[p] = math.fsum(pieces) + self.residual[p]
        self._forget(p)
        self._pieces[p] = None
        self._touched.add(p)
