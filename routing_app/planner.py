"""The planner: decides which tenants to isolate, shard, merge back or move. Pure, no I/O.

The worker (``routing_app.app``) and the simulator (``routing_app.simulate``) call the same
``plan`` with the same dataclasses; only where the inputs come from differs.

One cycle, per data topic, in priority order (the move budget is shared, highest first):

1. drain: tenants on a drained partition (or on a route naming a partition that does not
   exist) move to the partitions with the most room;
2. shard: a tenant above ``unit`` (a share of the mean partition load, capped by the capacity)
   gets at least ``ceil(rate / unit)`` shards, grown and shrunk with hysteresis, if it can be
   split: a strict tenant's ordered streams (one per secondary key, plus its keyless records)
   never span partitions, so it is sharded only while its heaviest stream fits in one unit;
   otherwise it is isolated, the best one partition can do. A growing
   tenant takes the smallest count whose equal shares fit the roomiest partitions, else as
   many partitions as allowed (a burst spread thin moves nobody else); a shrink only goes as
   far as the bigger shares still fit;
3. then, until nothing changes (one step can open room for another): isolate the dominant
   tenant of a hot partition (one hot on its own goes where the fewest others share its
   load); relieve partitions above mean x (1 + tolerance) down to
   mean x (1 + settle_tolerance) with the fewest moves (the smallest tenant that fixes it
   alone, else the largest that fits; if nothing fits whole, move a few smaller tenants off a
   roomy partition to make room, or as a last resort give a tenant more shards), never moving
   a tenant the merge rule would send straight back; merge cooled routed tenants back to
   hashing where their hash partition stays below the rebalance trigger.

Loads are seen two ways: the estimate (tenant rates placed by the routes, plus residual) and
the broker's measured rate. A partition is over a level if either view is; targets must fit in
both; measured load and lag rank the targets that fit. What the broker measures beyond the
estimate stays with its partition as tenants move, so after a plan's changes apply, planning
again on the same rates and loads equal to the new estimates finds nothing to do.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

from routing_app.client.partitioner import java_partition
from routing_app.routes.model import Route, RouteMode, RouteStatus

TenantKey = tuple[str, str]  # (data topic, tenant)
PartitionKey = tuple[str, int]  # (data topic, partition)

PINNED = "pinned"
# Making room for one tenant moves at most this many smaller ones.
_MAX_EVICTIONS = 4


class Action(StrEnum):
    ISOLATE = "isolate"  # a tenant that makes its partition hot gets a partition of its own
    SHARD = "shard"  # a tenant too big for one partition is spread over several (grow/shrink)
    MERGE = "merge"  # a cooled tenant returns to default hashing (tombstone)
    REBALANCE = "rebalance"  # a medium tenant moves off a partition that stays above the mean
    DRAIN = "drain"  # a tenant moves off a partition an operator is draining


@dataclass(frozen=True)
class Policy:
    """Knobs; rates are records per second. The demo and the e2e tests set their own.

    The defaults are tuned with ``routing-app simulate`` (Zipf 1.4, 10k tenants, 50 partitions,
    mean load half the capacity, flash crowds, churn, a diurnal wave): max/mean about 1.08 and
    well under 1% of tenants moved per hour once settled. They are checked on 12-partition
    clusters too (the README's "Planner policy" has the figures and the reasons).
    """

    partition_capacity: float = 5_000.0
    # A partition is hot above max(hot_threshold x mean, hot_floor_fraction x capacity). The
    # floor scales with the other levels (rebalance, settle), so a quiet cluster is left alone.
    hot_threshold: float = 1.5
    hot_floor_fraction: float = 0.2
    # A shard (and an unsharded tenant) should carry at most
    #   unit = min(target_load x capacity, max(shard_fill x mean, min_shard_fraction x capacity))
    # so a tenant needs ceil(rate / unit) shards: never a planned shard above target_load of a
    # partition's capacity, and, below that, small enough to fit next to others.
    target_load: float = 0.7
    # Rebalance when a partition stays above mean x (1 + tolerance).
    tolerance: float = 0.10
    # k shards are sized for a rate up to k x unit: the count grows only past k x unit x
    # (1 + hysteresis) and shrinks only below (k - 1) x unit x (1 - hysteresis) (no flapping).
    hysteresis: float = 0.25
    # A tenant is not moved again within this long of its last move.
    min_dwell_s: float = 300.0
    # A routed tenant whose rate stays below merge_back_threshold x the mean partition load for
    # cooldown_s merges back to hashing (where its hash partition stays below the rebalance
    # trigger). Rebalancing moves no tenant below merge_back_threshold x (1 + hysteresis) x mean,
    # or the merge would send it straight back: this is also the smallest tenant rebalancing
    # moves. 0.05 rather than 0.1 lets rebalancing use tenants from 6% of the mean up (flat
    # tenant mixes need them; see the README's policy section for the figures).
    cooldown_s: float = 120.0
    merge_back_threshold: float = 0.05
    max_moves_per_cycle: int = 5
    # None: up to the topic's partition count. Under heavy skew one tenant can carry a third of
    # all traffic; a fixed small cap would leave its shards far above the mean.
    max_shards: int | None = None
    # See target_load. Relative to the mean, so a diurnal wave (every rate x k) changes no
    # shard count. Half the mean packs well (two shards, or a shard and small tenants, share a
    # partition evenly), where shards near the mean leave slivers of room nothing fits; a
    # quarter balances no better and shards twice as many tenants (each one loses its
    # per-tenant order). See the README's "Planner policy" for the figures.
    shard_fill: float = 0.5
    # See target_load: in a quiet cluster, no shard is planned for less than this x capacity.
    min_shard_fraction: float = 0.05
    # Every move (rebalance, make-room, shard placement, shrink) fills partitions only up to
    # mean x (1 + settle_tolerance), well inside `tolerance`, so window noise does not undo it
    # at once. (A merge back, a tenant below merge_back_threshold, may fill its hash partition up
    # to the rebalance trigger.)
    settle_tolerance: float = 0.05
    # Lag counts against a target as lag / lag_horizon_s extra records per second (the backlog
    # it still has to work off within that horizon).
    lag_horizon_s: float = 60.0
    # Rebalancing moves no tenant below min_move_fraction x mean (nor below the merge-back
    # level, see merge_back_threshold): a route of its own would cost more (a routes-table
    # entry, a move that drains) than the little load it shifts.
    min_move_fraction: float = 0.01


@dataclass(frozen=True)
class TenantRate:
    topic: str
    tenant: str
    records_per_s: float
    bytes_per_s: float = 0.0
    # The rate of the tenant's heaviest ordered stream: one secondary key, or all its records
    # sent without one (``key=tenant``). None (unknown: producers that do not report it) means
    # the whole tenant is one stream, the only safe assumption for strict order.
    top_stream_per_s: float | None = None
    # Distinct ordered streams seen (0: unknown). Shown in reasons; the rule uses the rate above.
    streams: int = 0


@dataclass(frozen=True)
class PartitionLoad:
    """What the broker says: write rate (end-offset growth) and consumer lag of one partition."""

    topic: str
    partition: int
    records_per_s: float
    lag: int = 0


@dataclass(frozen=True)
class TenantHistory:
    """What the planner remembers about a tenant between cycles (kept by the caller)."""

    last_moved_ms: int | None = None
    # Since when the tenant has been below the merge-back threshold (None: it is not).
    cool_since_ms: int | None = None


@dataclass(frozen=True)
class PlannerInput:
    now_ms: int
    partition_counts: Mapping[str, int]  # data topic -> partitions
    routes: Mapping[TenantKey, Route]
    rates: Mapping[TenantKey, TenantRate]  # complete window; tenants not listed send ~0
    loads: Mapping[PartitionKey, PartitionLoad]  # broker ground truth (may be empty)
    history: Mapping[TenantKey, TenantHistory] = field(default_factory=dict)
    frozen: frozenset[TenantKey] = frozenset()  # operator froze: never moved automatically
    drained: frozenset[PartitionKey] = frozenset()  # operator drains: move off, never target
    # Residual traffic (not attributed to any reported tenant) per partition.
    residual: Mapping[PartitionKey, float] = field(default_factory=dict)
    policy: Policy = field(default_factory=Policy)
    # False when some usage partitions never reported the window (planned after the wait):
    # tenants on them look idle, so a hot partition's load may have no known cause. Then only
    # tenants seen hot move (isolate, shard); no rebalance or merge back acts on the gaps.
    complete: bool = True


@dataclass(frozen=True)
class PlannedChange:
    topic: str
    tenant: str
    action: Action
    # New placement; None means tombstone (back to default hashing).
    partitions: tuple[int, ...] | None
    reason: str
    observed: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    changes: tuple[PlannedChange, ...]
    # History to carry into the next cycle (cool-down clocks, last move times).
    history: Mapping[TenantKey, TenantHistory]
    # The move budget ran out while the planner still wanted to act: the next cycle continues.
    truncated: bool = False


# -- helpers the worker, the simulator and the tests share ---------------------------------------


def is_pinned(route: Route) -> bool:
    return route.attributes.get(PINNED) == "true"


def usable_partitions(route: Route, partition_count: int) -> tuple[int, ...] | None:
    """The partitions the producer really uses for ``route``; None when it hashes instead."""
    parts = route.partitions
    if not parts or min(parts) < 0 or max(parts) >= partition_count or len(set(parts)) != len(parts):
        return None
    return parts


def shard_unit(policy: Policy, mean: float) -> float:
    """What one shard (or an unsharded tenant) should carry at most, for a mean partition load."""
    capacity = policy.partition_capacity
    return min(policy.target_load * capacity,
               max(policy.shard_fill * mean, policy.min_shard_fraction * capacity))


def estimate_loads(
    partition_counts: Mapping[str, int],
    routes: Mapping[TenantKey, Route],
    rates: Mapping[TenantKey, TenantRate],
    residual: Mapping[PartitionKey, float] | None = None,
) -> dict[PartitionKey, float]:
    """Records/s per partition if every tenant sends its rate where its route (or murmur2) says."""
    parts: dict[str, list[list[float]]] = {t: [[] for _ in range(n)]
                                           for t, n in partition_counts.items() if n > 0}
    for (topic, tenant), tr in rates.items():
        shares = parts.get(topic)
        rate = _clean(tr.records_per_s)
        if shares is None or rate <= 0:
            continue
        route = routes.get((topic, tenant))
        placed = usable_partitions(route, len(shares)) if route is not None else None
        if placed is None:
            shares[java_partition(tenant.encode(), len(shares))].append(rate)
        else:
            for p in placed:
                shares[p].append(rate / len(placed))
    out: dict[PartitionKey, float] = {}
    for topic, per_partition in parts.items():
        for p, values in enumerate(per_partition):
            extra = _clean((residual or {}).get((topic, p), 0.0))
            out[(topic, p)] = math.fsum(values) + extra
    return out


def apply_changes(
    routes: Mapping[TenantKey, Route],
    changes: Iterable[PlannedChange],
    now_ms: int,
    last_epochs: dict[TenantKey, int] | None = None,
    decided_by: str = "planner",
) -> dict[TenantKey, Route]:
    """The routes table after the changes: new epochs (+1, surviving tombstones via
    ``last_epochs``, which is updated in place), tombstones removed."""
    table = dict(routes)
    epochs = last_epochs if last_epochs is not None else {}
    for change in changes:
        key = (change.topic, change.tenant)
        before = table.get(key)
        epoch = max(epochs.get(key, 0), before.epoch if before else 0) + 1
        epochs[key] = epoch
        if change.partitions is None:
            table.pop(key, None)
            continue
        route = Route(
            topic=change.topic, tenant=change.tenant, partitions=change.partitions, epoch=epoch,
            reason=change.reason, updated_at_ms=now_ms, decided_by=decided_by,
        )
        if before is not None:
            route = replace(route, mode=before.mode, previous_partitions=before.partitions,
                            attributes=before.attributes)
        table[key] = route
    return table


def plan(inp: PlannerInput) -> Plan:
    """The changes for one complete window. Deterministic for the same input."""
    budget = _Budget(inp.policy.max_moves_per_cycle)
    changes: list[PlannedChange] = []
    topics = _split_by_topic(inp, budget, changes)
    try:
        for state in topics:
            state.drain()
        for state in topics:
            state.shard()
        for state in topics:
            state.settle()
    except _OutOfMoves:
        budget.truncated = True
    return Plan(changes=tuple(changes), history=_history(inp, topics), truncated=budget.truncated)


# -- internals -----------------------------------------------------------------------------------


class _OutOfMoves(Exception):
    """The planner wanted one more change than the budget allows."""


class _Budget:
    def __init__(self, moves: int) -> None:
        self.left = max(0, moves)
        self.truncated = False

    def take(self) -> None:
        if self.left <= 0:
            raise _OutOfMoves
        self.left -= 1


_HOMES: dict[int, dict[str, int]] = {}
_HOMES_LIMIT = 2_000_000


def _homes(partition_count: int) -> dict[str, int]:
    """Memo of murmur2 homes for one partition count. A pure function's cache: it changes no
    result, only saves re-hashing every tenant every cycle."""
    if sum(len(cache) for cache in _HOMES.values()) > _HOMES_LIMIT:
        _HOMES.clear()
    return _HOMES.setdefault(partition_count, {})


def _clean(value: float) -> float:
    # A NaN or negative rate from a broken report must not poison every sum.
    return value if value > 0 and math.isfinite(value) else 0.0


def _offset(measured: float, estimate: float) -> float:
    # A measurement summed in another order differs from the estimate by rounding only.
    off = _clean(measured) - estimate
    return 0.0 if abs(off) <= 1e-9 * max(1.0, estimate) else off


def _rate(value: float) -> str:
    return f"{value:,.0f}/s"


def _split_by_topic(inp: PlannerInput, budget: _Budget,
                    changes: list[PlannedChange]) -> list[_Topic]:
    rates: dict[str, dict[str, float]] = {}
    streams: dict[str, dict[str, tuple[float, int]]] = {}
    inf = math.inf
    for (topic, tenant), tr in inp.rates.items():
        rate = tr.records_per_s
        # Inline _clean: this loop runs once per tenant per cycle.
        rates.setdefault(topic, {})[tenant] = rate = rate if 0 < rate < inf else 0.0
        top = tr.top_stream_per_s
        # Only what is known to split is kept: a heaviest stream of none, or a negative or NaN
        # one, is a broken report (unknown: one stream); no stream is below an even split.
        if top is not None and 0 < top < rate:
            even = rate / tr.streams if tr.streams > 0 else 0.0
            streams.setdefault(topic, {})[tenant] = (max(top, even), tr.streams)
    routes: dict[str, dict[str, Route]] = {}
    for (topic, tenant), route in inp.routes.items():
        routes.setdefault(topic, {})[tenant] = route
    residual: dict[str, dict[int, float]] = {}
    for (topic, p), value in inp.residual.items():
        residual.setdefault(topic, {})[p] = _clean(value)
    loads: dict[str, dict[int, PartitionLoad]] = {}
    for (topic, p), load in inp.loads.items():
        loads.setdefault(topic, {})[p] = load
    drained: dict[str, set[int]] = {}
    for topic, p in inp.drained:
        drained.setdefault(topic, set()).add(p)
    out = []
    for topic in sorted(set(rates) | set(routes)):
        n = inp.partition_counts.get(topic, 0)
        if n <= 0:
            continue  # unknown topic: nothing can be placed, nothing is named
        out.append(_Topic(topic, n, inp, budget, changes, rates.get(topic, {}),
                          routes.get(topic, {}), residual.get(topic, {}), loads.get(topic, {}),
                          drained.get(topic, set()), streams.get(topic, {})))
    return out


class _Topic:
    """One data topic's placement while a plan is built; every move updates it at once.

    Loads are seen two ways: the estimate (rates placed by routes, plus residual) and, where
    the broker reported one, the measured write rate, each against its own mean. A partition
    is over a level when either view is; a target fits only where both views stay under it.
    """

    def __init__(self, name: str, n: int, inp: PlannerInput, budget: _Budget,
                 changes: list[PlannedChange], rates: dict[str, float], routes: dict[str, Route],
                 residual: dict[int, float], loads: dict[int, PartitionLoad],
                 drained: set[int], streams: dict[str, tuple[float, int]]) -> None:
        policy = inp.policy
        self.name, self.n, self.policy, self.now = name, n, policy, inp.now_ms
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
        shares: list[list[float]] = [[] for _ in range(n)]
        # Locals: this loop runs once per tenant per cycle (100k tenants: most of plan's time).
        parts, members, homes = self.parts, self.members, _homes(n)
        for tenant, rate in rates.items():
            if rate > 0 and tenant not in routes:
                p = homes.get(tenant)
                if p is None:
                    p = homes[tenant] = java_partition(tenant.encode(), n)
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
            self.parts[tenant] = placed
            for p in placed:
                self.members[p].add(tenant)
                shares[p].append(rate / len(placed))
        # fsum: exact, so the same placement gives bit-identical loads whatever the input order
        # (and whether reached by moves within a plan or rebuilt from the applied routes).
        self.est = [math.fsum(shares[p]) + self.residual[p] for p in range(n)]
        total = math.fsum(rates.values()) + math.fsum(self.residual)
        self.mean = total / len(self.active) if self.active else 0.0
        # What the broker measured beyond (or short of) the estimate: traffic the rates do not
        # explain. It stays with its partition while tenants move, so the measured view of a
        # partition is always estimate + offset, against a mean shifted the same way.
        self.offset = [_offset(loads[p].records_per_s, self.est[p]) if p in loads else 0.0
                       for p in range(n)]
        self.measured = any(self.offset[p] != 0.0 for p in self.active)
        self.meas_mean = (self.mean + math.fsum(self.offset[p] for p in self.active)
                          / len(self.active)) if self.measured else self.mean

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
        cap = policy.max_shards if policy.max_shards is not None else n
        self.max_shards = max(1, min(cap, len(self.active)))
        # "Dedicated" targets carry no other routed tenant of this weight.
        self.heavy = [0] * n
        for tenant in self.routed:
            self._count_heavy(tenant, +1)
        self._roomiest: tuple[tuple[float, int], tuple[float, int]] | None = None

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

    def describe(self, p: int) -> str:
        load, mean, measured = max(self._views(p), key=lambda v: v[0] / v[1] if v[1] > 0 else 0.0)
        times = load / mean if mean > 0 else 0.0
        return (f"partition {p} at {_rate(load)}{' measured' if measured else ''} is "
                f"{times:.2f}x the mean {_rate(mean)}")

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
        homes = _homes(self.n)
        home = homes.get(tenant)
        if home is None:
            home = homes[tenant] = java_partition(tenant.encode(), self.n)
        return home

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

    # -- moving ----------------------------------------------------------------------------------

    def _count_heavy(self, tenant: str, sign: int) -> None:
        if tenant in self.routed and self.rate(tenant) > 0 and self.piece(tenant) >= self.cool_level:
            for p in self.parts[tenant]:
                self.heavy[p] += sign

    def _refresh(self, p: int) -> None:
        self.est[p] = math.fsum([self.piece(t) for t in self.members[p]]) + self.residual[p]

    def _roomiest_except(self, p: int) -> float:
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

    def _move(self, tenant: str, new_parts: tuple[int, ...] | None, action: Action, reason: str,
              observed: dict[str, float]) -> None:
        """Record one change and apply it to the state (raises _OutOfMoves when over budget)."""
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
        self.changes.append(PlannedChange(self.name, tenant, action, new_parts, reason,
                                          {k: round(v, 3) for k, v in observed.items()}))

    def _observed(self, tenant: str, source: Iterable[int], target: Iterable[int]) -> dict[str, float]:
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

    def _best_fit(self, exclude: Iterable[int], amount: float, factor: float | None,
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

    def _roomiest_for(self, tenant: str, pool: Iterable[int], k: int) -> list[tuple[float, int]]:
        """The k partitions of pool with the most settle headroom, counting the tenant's own
        share as free: (headroom, partition), most first."""
        own = self.parts.get(tenant, ())
        piece = self.piece(tenant) if own else 0.0
        ranked = sorted((-(self.headroom(p, self.settle_factor) + (piece if p in own else 0.0)),
                         self.score(p), p) for p in pool)
        return [(-room, p) for room, _, p in ranked[:k]]

    def _sorted_by_rate(self, tenants: Iterable[str]) -> list[str]:
        return sorted(tenants, key=lambda t: (-self.rate(t), t))

    # -- 1. drain --------------------------------------------------------------------------------

    def drain(self) -> None:
        victims: set[str] = set(self.broken)
        for p in self.drained:
            victims |= self.members[p]
        for tenant in self._sorted_by_rate(victims):
            if not self.movable(tenant):
                continue
            rate = self.rate(tenant)
            route = self.routes.get(tenant)
            if tenant in self.broken and route is not None:
                base = list(dict.fromkeys(route.partitions))
            elif tenant in self.routed or rate > 0:
                base = list(self.parts[tenant])
            else:
                continue
            bad = [p for p in base if not 0 <= p < self.n or p in self.drained]
            keep = [p for p in base if 0 <= p < self.n and p not in self.drained]
            missing = max(len(base), 1) - len(keep)
            if missing <= 0 and tenant not in self.broken:
                continue
            source = list(self.parts.get(tenant, ()))
            own = set(keep)
            pool = [p for p in self.active if p not in own]
            added = [p for _, p in self._roomiest_for(tenant, pool, missing)]
            new = tuple(keep + added)
            if not new:
                continue  # nowhere to go: every partition is drained
            if bad:
                why = ", ".join(
                    f"partition {p} does not exist (0..{self.n - 1})" if not 0 <= p < self.n
                    else f"partition {p} is being drained" for p in bad)
            else:
                why = f"route names a partition twice: {list(route.partitions) if route else []}"
            reason = (f"{why}; {tenant} ({_rate(rate)}) moves to "
                      f"{_plist(added) if added else _plist(new)}")
            self._move(tenant, new, Action.DRAIN, reason, self._observed(tenant, source, added))

    # -- 2. shard --------------------------------------------------------------------------------

    def shard_count(self, rate: float, current: int) -> int | None:
        """The new shard count for a tenant on ``current`` partitions; None keeps it."""
        unit, hyst = self.unit, self.policy.hysteresis
        if unit <= 0:
            return None
        desired = min(self.max_shards, max(1, math.ceil(rate / unit)))
        if current > self.max_shards:
            return desired
        if desired > current and rate > current * unit * (1 + hyst):
            return desired
        if desired < current and rate < (current - 1) * unit * (1 - hyst):
            return desired
        return None

    def shard(self) -> None:
        if not self.active:
            return  # every partition is drained: nowhere to put anything
        grow_above = self.unit * (1 + self.policy.hysteresis)
        wanted = {t for t, rate in self.rates.items() if rate > grow_above and t in self.parts}
        wanted.update(t for t in self.routed if len(self.parts[t]) > 1)
        wanted -= self.broken
        for tenant in self._sorted_by_rate(wanted):
            if not self.movable(tenant):
                continue
            rate, current = self.rate(tenant), self.parts[tenant]
            count = self.shard_count(rate, len(current))
            if count is None or count == len(current):
                continue
            if count > len(current) and not self.splittable(tenant):
                self._isolate_unsplittable(tenant, rate)
                continue
            if count == 1 and rate < self.cool_level:
                continue  # merging back will handle it; one move instead of two
            new = self._shard_placement(tenant, count)
            if not new or new == current:
                continue  # nowhere else to put a shard, or no room to shrink into
            count = len(new)
            if count > len(current):
                reason = (f"{tenant} sends {_rate(rate)}, {rate / self.mean:.1f}x the mean "
                          f"partition load {_rate(self.mean)}; a partition should carry at most "
                          f"{_rate(self.unit)} of it: sharded over {count} partitions "
                          f"(was {len(current)})")
            else:
                reason = (f"{tenant} now sends {_rate(rate)}, less than {len(current) - 1} "
                          f"shards of {_rate(self.unit)} (minus {self.policy.hysteresis:.0%} "
                          f"hysteresis): shrunk from {len(current)} to {count} partitions")
            observed = self._observed(tenant, current, new)
            observed["shards"] = float(count)
            self._move(tenant, new, Action.SHARD, reason, observed)

    def _isolate_unsplittable(self, tenant: str, rate: float) -> None:
        """A strict tenant too big for one shard whose heaviest ordered stream is too: shards
        would carry that stream on one partition anyway, so it gets a partition of its own."""
        current = self.parts[tenant]
        if len(current) > 1:
            return  # already sharded (its streams each keep one shard): no more shards
        (p,) = current
        if self.members[p] == {tenant}:
            return  # alone already (routed or hashed): the best one partition can do
        # Worth a (draining) move only to a partition where it shares clearly less than here,
        # by the tolerance once routed: it then never wanders between equals. Staying under
        # the hot level is no reason to move: a partition of its own is the point. First where
        # the load no rebalance moves away (residual, tenants below min_move) is least, as
        # rebalancing then clears the rest; else where the whole load is clearly less.
        margin = (self.policy.tolerance if tenant in self.routed
                  else self.policy.settle_tolerance) * self.mean
        here = self._unmovable(p, tenant)
        # Not onto another tenant bigger than a shard: rebalancing could not clear it away.
        ranked = sorted((self._unmovable(q, tenant), self.score(q), q) for q in self.active
                        if q != p and all(self.piece(t) < self.unit for t in self.members[q]))
        target = next((q for fixed, _, q in ranked if fixed < here - margin), None)
        if target is None:
            target = self._best_fit((p,), rate, None, None, cap=self.est[p] - margin)
        if target is None:
            return
        top = self.heaviest_stream(tenant)
        known = self.streams.get(tenant)
        streams = (f"its heaviest of {known[1]:,} ordered streams" if known and known[1]
                   else "its heaviest ordered stream" if known
                   else "it is one ordered stream (records without a secondary key)")
        reason = (f"{tenant} sends {_rate(rate)}, more than a shard's {_rate(self.unit)}, but "
                  f"{streams} carries {_rate(top)}: not sharded (strict order keeps each stream "
                  f"on one partition); isolated on partition {target} "
                  f"({_rate(self.est[target])}) instead")
        observed = self._observed(tenant, (p,), (target,))
        observed["top_stream_rate"] = top
        self._move(tenant, (target,), Action.ISOLATE, reason, observed)

    def _unmovable(self, p: int, tenant: str) -> float:
        """The load on p that rebalancing would leave there: residual and tenants too small
        to move (below min_move), the tenant itself aside."""
        return self.residual[p] + math.fsum(self.piece(t) for t in self.members[p]
                                            if t != tenant and self.piece(t) < self.min_move)

    def _shard_placement(self, tenant: str, count: int) -> tuple[int, ...]:
        """Where the tenant's shards go; ``count`` is what the hysteresis rule asks for."""
        current = [p for p in self.parts[tenant] if p not in self.drained]
        rate = self.rate(tenant)
        if count < len(current):
            # Fewer shards are only tidier: shrink as far as the bigger shares still fit on the
            # partitions kept (settled, below the rebalance trigger), so shrinking never makes
            # other tenants move.
            own = self._roomiest_for(tenant, current, len(current))
            forced = len(self.parts[tenant]) > self.max_shards
            for k in range(count, len(current)):
                if forced or own[k - 1][0] >= rate / k:
                    kept = {p for _, p in own[:k]}
                    # Surviving shards keep their order: fewer secondary keys change shard.
                    return tuple(p for p in current if p in kept)
            return tuple(self.parts[tenant])
        owned = set(self.parts[tenant])
        pool = [p for p in self.active if p not in owned]
        ranked = self._roomiest_for(tenant, pool, len(pool))
        largest = min(self.max_shards, len(current) + len(ranked))
        # The smallest count from `count` up whose equal shares fit (settled) on the roomiest
        # partitions, so no other tenant has to move; else as many as allowed: a burst spread
        # thin costs this one move, where fewer, bigger shards on full partitions would push
        # dozens of tenants around (and back again when it ends). Shrinking (above) only undoes
        # it once there is room.
        for k in range(count, largest + 1):
            missing = k - len(current)
            if ranked[missing - 1][0] >= rate / k:
                return tuple(current + [p for _, p in ranked[:missing]])
        return tuple(current + [p for _, p in ranked[:largest - len(current)]])

    # -- 3. isolate, rebalance, merge until nothing changes ---------------------------------------

    def settle(self) -> None:
        # A later step can open room for an earlier one (a relieved source becomes a target);
        # looping until quiet is what makes a plan, applied and planned again, produce nothing.
        cool = sorted(t for t in self.routed
                      if self.rate(t) < self.cool_level and t not in self.broken)
        complete = self.inp.complete
        while True:
            moved = self._isolate()
            if complete:
                moved = self._rebalance() or moved
                moved = self._merge(cool) or moved
            if not moved:
                return

    def _hot(self, factor: float) -> list[int]:
        return sorted((p for p in self.active if self.over(p, factor)),
                      key=lambda p: (-self.ratio(p), p))

    def _isolate(self) -> bool:
        moved = False
        for p in self._hot(self.hot_factor):
            if not self.over(p, self.hot_factor):
                continue
            singles = [t for t in self.members[p]
                       if len(self.parts[t]) == 1 and self.rate(t) > 0 and self.movable(t)]
            if not singles:
                continue
            tenant = min(singles, key=lambda t: (-self.rate(t), t))
            rate = self.rate(tenant)
            # "Fixes most of it": the tenant explains at least half of the excess.
            if rate < 0.5 * self.excess(p):
                continue
            target = self._isolation_target(p, tenant, rate)
            if target is None:
                continue
            lag = f", lag {int(self.lag[target]):,}" if self.lag[target] else ""
            reason = (f"{self.describe(p)}; {tenant} sends {_rate(rate)}: isolated on partition "
                      f"{target} ({_rate(self.est[target])}{lag})")
            self._move(tenant, (target,), Action.ISOLATE, reason,
                       self._observed(tenant, (p,), (target,)))
            moved = True
        return moved

    def _isolation_target(self, p: int, tenant: str, rate: float) -> int | None:
        """Preferably a partition without another heavy routed tenant ("dedicated"), where the
        tenant stays below the hot level. A tenant hot on its own stays the maximum wherever it
        goes; it then takes the partition where the fewest others share its load, if that cuts
        the hot partition's load by settle_tolerance x mean when it leaves its hash partition,
        by the tolerance when it is routed already (it does not wander between equals)."""
        dedicated = [q for q in self.active if self.heavy[q] == 0]
        margin = (self.policy.tolerance if tenant in self.routed
                  else self.policy.settle_tolerance)
        better = self.est[p] - margin * self.mean
        hot = self.hot_factor
        for factor, cap, only in ((hot, None, dedicated), (hot, None, None),
                                  (None, better, dedicated), (None, better, None)):
            target = self._best_fit((p,), rate, factor, only, cap=cap)
            if target is not None:
                return target
        return None

    def _rebalance(self) -> bool:
        moved = False
        for p in self._hot(self.trigger_factor):
            moved = self._relieve(p) or moved
        return moved

    def _relieve(self, p: int) -> bool:
        """Move the fewest tenants (largest-first that fits) until p is back near the mean."""
        moved = False
        settle = self.settle_factor
        while self.over(p, settle):
            pieces = sorted((self.piece(t), t) for t in self.members[p]
                            if self.piece(t) >= self.min_move and self.movable(t))
            need = -self.headroom(p, settle)
            split = bisect_left(pieces, (need, ""))
            # One tenant that fixes it alone (the smallest such), else the largest that fits.
            order = pieces[split:] + pieces[:split][::-1]
            choice = self._direct_fit(p, order)
            if choice is not None:
                tenant, amount, target = choice
                self._rebalance_move(tenant, amount, p, target, "")
                moved = True
                continue
            made = self._make_room(p, order[:3])
            if made is None:
                if self._split(p):
                    moved = True
                    continue
                return moved
            tenant, amount, target, evictions = made
            why = (f"making room for {tenant} ({_rate(amount)}) from hot "
                   f"{self.describe(p)}: ")
            for small, size, dest in evictions:
                self._rebalance_move(small, size, target, dest, why)
            self._rebalance_move(tenant, amount, p, target, "")
            moved = True
        return moved

    def _direct_fit(self, p: int, order: list[tuple[float, str]]) -> tuple[str, float, int] | None:
        roomiest = self._roomiest_except(p)
        for amount, tenant in order:
            if amount > roomiest:
                continue
            target = self._best_fit(self.parts[tenant], amount, self.settle_factor)
            if target is not None:
                return tenant, amount, target
        return None

    def _make_room(self, p: int, order: list[tuple[float, str]]
                   ) -> tuple[str, float, int, list[tuple[str, float, int]]] | None:
        """Room is often scattered in slivers no tenant fits: gather one sliver-sized
        partition's worth by moving a few smaller tenants off one of the roomiest partitions."""
        for amount, tenant in order:
            own = set(self.parts[tenant])
            roomiest = self._roomiest_for(tenant, [q for q in self.active if q not in own], 3)
            for room, q in roomiest:
                evictions = self._evictions(q, amount, amount - room, {p, q})
                if evictions is not None:
                    return tenant, amount, q, evictions
        return None

    def _evictions(self, q: int, below: float, need: float,
                   avoid: set[int]) -> list[tuple[str, float, int]] | None:
        # Only smaller tenants leave, so every round consolidates room and nothing cycles.
        small = sorted((self.piece(t), t) for t in self.members[q]
                       if self.min_move <= self.piece(t) < below and self.movable(t))
        extra: dict[int, float] = {}
        out: list[tuple[str, float, int]] = []
        while need > 0 and small and len(out) < _MAX_EVICTIONS:
            split = bisect_left(small, (need, ""))
            for size, t in small[split:] + small[:split][::-1]:
                dest = self._best_fit(avoid | set(self.parts[t]), size, self.settle_factor,
                                      extra=extra)
                if dest is not None:
                    out.append((t, size, dest))
                    extra[dest] = extra.get(dest, 0.0) + size
                    small.remove((size, t))
                    need -= size
                    break
            else:
                return None
        return out if need <= 0 else None

    def _split(self, p: int) -> bool:
        """Last resort for a hot partition whose tenants fit nowhere whole: give one of them
        more shards so the smaller shares fit. Only tenants the shrink rule would keep on two
        or more shards: a smaller one would flip straight back."""
        big = self.unit * (1 - self.policy.hysteresis)
        if len(self.members[p]) == 1 and self.est[p] <= self.unit:
            # An isolated tenant within one shard's worth: the partition is hot, but it hurts
            # nobody else there, and splitting it would cost a move (a drain) to gain only a
            # lower max/mean.
            return False
        candidates = sorted((t for t in self.members[p]
                             if self.rate(t) > big and t not in self.broken and self.movable(t)
                             and self.splittable(t)),
                            key=lambda t: (-self.piece(t), t))
        for tenant in candidates:
            current, rate = self.parts[tenant], self.rate(tenant)
            own = set(current)
            ranked = self._roomiest_for(tenant, [q for q in self.active if q not in own],
                                        self.n)
            largest = min(self.max_shards, len(current) + len(ranked))
            for count in range(len(current) + 1, largest + 1):
                missing = count - len(current)
                if ranked[missing - 1][0] < rate / count:
                    continue
                new = (*current, *(q for _, q in ranked[:missing]))
                reason = (f"{self.describe(p)} and no tenant there fits elsewhere whole: "
                          f"{tenant} ({_rate(rate)}) sharded over {count} partitions (was "
                          f"{len(current)}) so its shares ({_rate(rate / count)}) fit the room left")
                observed = self._observed(tenant, (p,), new[len(current):])
                observed["shards"] = float(count)
                self._move(tenant, new, Action.SHARD, reason, observed)
                return True
        return False

    def _rebalance_move(self, tenant: str, amount: float, source: int, target: int,
                        why: str) -> None:
        new = tuple(target if old == source else old for old in self.parts[tenant])
        what = f"{tenant} ({_rate(amount)}{' per shard' if len(new) > 1 else ''})"
        if not why:
            why = f"{self.describe(source)} (tolerance {self.policy.tolerance:.0%}); "
        reason = f"{why}moving {what} to partition {target} ({_rate(self.est[target])})"
        self._move(tenant, new, Action.REBALANCE, reason,
                   self._observed(tenant, (source,), (target,)))

    def _merge(self, cool: list[str]) -> bool:
        moved = False
        cooldown_ms = self.policy.cooldown_s * 1000
        for tenant in cool:
            if tenant not in self.routed or not self.movable(tenant):
                continue
            since = self.cool_since(tenant)
            if since is None or self.now - since < cooldown_ms:
                continue
            home = self.hash_of(tenant)
            if home in self.drained:
                continue
            rate, current = self.rate(tenant), self.parts[tenant]
            own_there = self.piece(tenant) if home in current else 0.0
            cool_for = (self.now - since) / 1000
            # Only where its hash partition stays below the rebalance trigger (and the hot
            # level): a merge must not make rebalancing or isolation move someone else.
            if rate <= 0 or self.headroom(home, self.merge_factor) + own_there >= rate:
                reason = (f"{tenant} sends {_rate(rate)}, below {self.policy.merge_back_threshold:.0%}"
                          f" of the mean {_rate(self.mean)} for {cool_for:,.0f} s: back to hashing "
                          f"(partition {home}, {_rate(self.est[home])})")
                self._move(tenant, None, Action.MERGE, reason,
                           self._observed(tenant, current, (home,)))
                moved = True
                continue
            if len(current) < 2:
                continue
            ((room, keep),) = self._roomiest_for(tenant, list(current), 1)
            if room >= rate:
                reason = (f"{tenant} sends {_rate(rate)}, cool for {cool_for:,.0f} s, but its hash "
                          f"partition {home} ({_rate(self.est[home])}) has no room: kept on "
                          f"partition {keep} only (was {len(current)} shards)")
                observed = self._observed(tenant, current, (keep,))
                observed["shards"] = 1.0
                self._move(tenant, (keep,), Action.SHARD, reason, observed)
                moved = True
        return moved


def _plist(parts: Iterable[int]) -> str:
    items = list(parts)
    return f"partition {items[0]}" if len(items) == 1 else f"partitions {items}"


def _history(inp: PlannerInput, topics: list[_Topic]) -> dict[TenantKey, TenantHistory]:
    dwell_ms = inp.policy.min_dwell_s * 1000
    planned = {state.name: state for state in topics}
    out: dict[TenantKey, TenantHistory] = {}
    for key, kept in inp.history.items():
        if key[0] not in planned:
            out[key] = kept  # a topic this cycle could not see: keep what we knew
    for state in topics:
        keys = set(state.routed) | state.changed
        keys.update(t for (topic, t) in inp.history if topic == state.name)
        for tenant in sorted(keys):
            hist = inp.history.get((state.name, tenant))
            if tenant in state.changed:
                last: int | None = state.now
            else:
                last = hist.last_moved_ms if hist is not None else None
                if last is not None and state.now - last >= dwell_ms:
                    last = None  # the dwell is over: nothing left to remember
            cool = state.cool_since(tenant)
            if tenant in state.changed and cool is not None:
                cool = state.now  # a new placement starts its cool-down afresh
            if last is not None or cool is not None:
                out[(state.name, tenant)] = TenantHistory(last_moved_ms=last, cool_since_ms=cool)
    return out
