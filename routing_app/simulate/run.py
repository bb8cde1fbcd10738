"""The simulation loop: traffic -> partition loads -> ``plan`` -> routes, once per window.

Per window (rates are that window's means): the loads each partition receives under the routes
in force are measured (as a broker would), the planner sees those rates and loads and its
changes apply from the next window on. On the same rates the loop also measures plain murmur2
hashing and partial key grouping (PKG): every tenant may use its two hash choices and each
record goes to the less loaded one. PKG is modelled per window as water-filling, tenants
largest first: a tenant fills the emptier of its two partitions up to the other's level, then
splits the rest evenly -- the fixed point record-by-record greedy choice tends to.

Every tenant rate carries its heaviest ordered stream and stream count (from the traffic's key
distributions), as producers report them. The loop also counts the *elephants* (tenants above
the level at which the shard rule shards a tenant on one partition: unit x (1 + hysteresis),
the planner's own unit for the window's mean) and the *unsplittable* ones among them, whose
heaviest stream exceeds the unit and half of their rate (strict order keeps a stream on one
partition, so two shards would not spread them: the planner isolates them instead); and the
heaviest stream of any tenant over the mean, the max/mean below which no order-keeping
placement can go.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from routing_app.client.partitioner import java_partition
from routing_app.planner import (
    HashBase,
    PartitionLoad,
    Plan,
    PlannerInput,
    Policy,
    ReasonKind,
    TenantHistory,
    TenantKey,
    TenantRate,
    apply_changes,
    plan,
    shard_unit,
)
from routing_app.routes.model import Route
from routing_app.simulate.traffic import Traffic, TrafficConfig

TOPIC = "sim.events"


@dataclass(frozen=True)
class SimConfig:
    traffic: TrafficConfig = field(default_factory=TrafficConfig)
    partitions: int = 50
    hours: float = 2.0
    window_s: float = 10.0
    policy: Policy = field(default_factory=Policy)
    # `topics expand` at this fraction of the run, to expand_to partitions (None: never).
    expand_at: float | None = None
    expand_to: int | None = None

    @property
    def windows(self) -> int:
        return max(1, round(self.hours * 3600 / self.window_s))

    @property
    def expand_window(self) -> int | None:
        """The window at whose start the topic grows, if it does."""
        if self.expand_at is None or self.expand_to is None or self.expand_to <= self.partitions:
            return None
        return min(self.windows - 1, max(0, round(self.expand_at * self.windows)))


@dataclass(frozen=True)
class WindowStats:
    t_s: float
    max_over_mean: float
    hash_max_over_mean: float
    pkg_max_over_mean: float
    moves: int
    sharded: int
    routed: int
    max_lag: float
    plan_s: float
    # Tenants above the shard level this window, those whose heaviest stream exceeds the unit,
    # and the heaviest stream of any tenant over the mean partition load.
    elephants: int = 0
    unsplittable: int = 0
    stream_floor: float = 0.0
    partitions: int = 0
    fills: int = 0  # moves onto partitions an expansion added (ReasonKind.FILL)


@dataclass
class SimResult:
    config: SimConfig
    windows: list[WindowStats]
    actions: Counter[str]
    routes: dict[TenantKey, Route]
    seconds: float
    arrivals: int
    flashes: int
    # Distinct tenants that were elephants, and unsplittable elephants, in some window.
    elephants: set[str] = field(default_factory=set)
    unsplittable: set[str] = field(default_factory=set)
    # Isolations because a tenant could not be sharded (ReasonKind.UNSPLITTABLE), and whom.
    unsplittable_isolations: int = 0
    unsplittable_isolated: set[str] = field(default_factory=set)
    # (start, end) simulated seconds of every flash crowd.
    flash_periods: list[tuple[float, float]] = field(default_factory=list)

    def settled(self) -> list[WindowStats]:
        """The second half of the run: after the start-up moves, still with flashes and churn."""
        return self.windows[len(self.windows) // 2 :]

    def summary(self) -> dict[str, Any]:
        cfg = self.config
        settled = self.settled()
        settled_hours = len(settled) * cfg.window_s / 3600
        settled_moves = sum(w.moves for w in settled)
        shard_counts = [len(r.partitions) for r in self.routes.values() if len(r.partitions) > 1]
        plan_times = [w.plan_s for w in self.windows]
        traffic = cfg.traffic
        return {
            "max_over_mean": _r(statistics.median(w.max_over_mean for w in settled)),
            "max_over_mean_p95": _r(_quantile([w.max_over_mean for w in settled], 0.95)),
            "hash_max_over_mean": _r(statistics.median(w.hash_max_over_mean for w in settled)),
            "pkg_max_over_mean": _r(statistics.median(w.pkg_max_over_mean for w in settled)),
            "moved_fraction_per_hour": round(settled_moves / cfg.traffic.tenants / settled_hours, 5)
            if settled_hours > 0
            else 0.0,
            "moves_per_hour": _r(settled_moves / settled_hours) if settled_hours > 0 else 0.0,
            "moves_total": sum(w.moves for w in self.windows),
            "sharded_tenants": len(shard_counts),
            "max_shard_count": max(shard_counts, default=1),
            "routed_tenants": len(self.routes),
            "max_lag_records": int(max((w.max_lag for w in settled), default=0.0)),
            "plan_ms_mean": _r(1000 * statistics.fmean(plan_times)),
            "plan_ms_max": _r(1000 * max(plan_times)),
            "actions": dict(sorted(self.actions.items())),
            # Key distributions: who the planner may shard (see the module docstring).
            "elephants": len(self.elephants),
            "unsplittable_elephants": len(self.unsplittable),
            "unsplittable_isolations": self.unsplittable_isolations,
            "unsplittable_isolated_tenants": len(self.unsplittable_isolated),
            "elephants_per_window": _r(statistics.median(w.elephants for w in settled)),
            "unsplittable_per_window": _r(statistics.median(w.unsplittable for w in settled)),
            "stream_floor_max_over_mean": _r(statistics.median(w.stream_floor for w in settled)),
            "keyless_fraction": traffic.keyless_fraction,
            "keys_max": traffic.keys_max,
            "key_zipf": traffic.key_zipf,
            "arrivals": self.arrivals,
            "flashes": self.flashes,
            "tenants": cfg.traffic.tenants,
            "partitions": cfg.partitions,
            "zipf": cfg.traffic.zipf,
            "hours": cfg.hours,
            "window_s": cfg.window_s,
            "total_rate": _r(cfg.traffic.total_rate),
            "windows": len(self.windows),
            "seconds": round(self.seconds, 2),
        }

    def expansion(self) -> dict[str, Any] | None:
        """How the planner filled the partitions ``expand_at`` added: balance before, right
        after and at the end, the windows until max/mean came back under the policy's
        rebalance trigger, and the moves (fills among them). Hashing, after the growth, is
        plain Kafka: every key rehashed by the new count (the order break the base avoids)."""
        cfg = self.config
        at = cfg.expand_window
        if at is None:
            return None
        before, after = self.windows[:at], self.windows[at:]
        trigger = 1 + cfg.policy.tolerance
        balanced = next((i for i, w in enumerate(after) if w.max_over_mean <= trigger), None)
        tail = after[len(after) * 3 // 4 :] or after
        return {
            "at_s": after[0].t_s,
            "from": cfg.partitions,
            "to": cfg.expand_to,
            "max_over_mean_before": _r(statistics.median(w.max_over_mean for w in before))
            if before
            else None,
            "max_over_mean_at_growth": _r(after[0].max_over_mean),
            "max_over_mean_end": _r(statistics.median(w.max_over_mean for w in tail)),
            "hash_max_over_mean_end": _r(statistics.median(w.hash_max_over_mean for w in tail)),
            "windows_to_trigger": balanced,
            "minutes_to_trigger": None if balanced is None else _r(balanced * cfg.window_s / 60),
            "moves_after": sum(w.moves for w in after),
            "fill_moves": sum(w.fills for w in after),
        }

    def series(self) -> dict[str, Any]:
        """Every window's max/mean under the planner, murmur2 hashing and PKG, and the flash
        crowds' periods: what ``simulate --series`` adds to the JSON."""
        return {
            "t_s": [w.t_s for w in self.windows],
            "max_over_mean": [_r(w.max_over_mean) for w in self.windows],
            "hash_max_over_mean": [_r(w.hash_max_over_mean) for w in self.windows],
            "pkg_max_over_mean": [_r(w.pkg_max_over_mean) for w in self.windows],
            "flash_periods_s": [list(period) for period in self.flash_periods],
        }

    def timeline(self, buckets: int = 12) -> list[dict[str, float]]:
        """Figures per slice of simulated time (median max/mean, moves, shards at its end)."""
        size = max(1, len(self.windows) // buckets)
        rows = []
        for start in range(0, len(self.windows), size):
            chunk = self.windows[start : start + size]
            rows.append(
                {
                    "minute": round(chunk[0].t_s / 60, 1),
                    "max_over_mean": _r(statistics.median(w.max_over_mean for w in chunk)),
                    "hash_max_over_mean": _r(statistics.median(w.hash_max_over_mean for w in chunk)),
                    "pkg_max_over_mean": _r(statistics.median(w.pkg_max_over_mean for w in chunk)),
                    "moves": sum(w.moves for w in chunk),
                    "sharded": chunk[-1].sharded,
                    "routed": chunk[-1].routed,
                    "unsplittable": chunk[-1].unsplittable,
                }
            )
        return rows


def _r(value: float) -> float:
    return round(value, 4)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _max_over_mean(loads: list[float]) -> float:
    total = sum(loads)
    return max(loads) * len(loads) / total if total > 0 else 1.0


def pkg_loads(
    rates: dict[str, float], first: dict[str, int], second: dict[str, int], partitions: int
) -> list[float]:
    # `rates` comes largest tenant first (Zipf rank order; a flashing tenant keeps its rank).
    loads = [0.0] * partitions
    for tenant, rate in rates.items():
        a, b = first[tenant], second[tenant]
        if loads[a] > loads[b]:
            a, b = b, a
        gap = loads[b] - loads[a]
        if a == b or rate <= gap:
            loads[a] += rate
        else:
            level = loads[b] + (rate - gap) / 2
            loads[a] = loads[b] = level
    return loads


def run_simulation(config: SimConfig, progress: Callable[[int, int], None] | None = None) -> SimResult:
    n = config.partitions
    if n < 1:
        raise ValueError("at least one partition")
    traffic = Traffic(config.traffic)
    policy = config.policy
    capacity = policy.partition_capacity
    routes: dict[TenantKey, Route] = {}
    placement: dict[str, tuple[int, ...]] = {}
    history: dict[TenantKey, TenantHistory] = {}
    epochs: dict[TenantKey, int] = {}
    first: dict[str, int] = {}
    second: dict[str, int] = {}
    lag = [0.0] * n
    stats: list[WindowStats] = []
    actions: Counter[str] = Counter()
    elephants: set[str] = set()
    unsplittable: set[str] = set()
    isolated: set[str] = set()
    isolations = 0
    started = time.perf_counter()

    expand_window = config.expand_window
    hash_bases: dict[str, HashBase] = {}
    # After an expansion, what plain Kafka would do (every key rehashed by the new count), for
    # the hashing and PKG baselines; the planner's tenants keep hashing by the base.
    plain_first: dict[str, int] = first
    plain_second: dict[str, int] = second

    for index in range(config.windows):
        t_s = index * config.window_s
        now_ms = round((t_s + config.window_s) * 1000)  # plans run when a window completes
        if index == expand_window and config.expand_to is not None:
            hash_bases = {TOPIC: HashBase(n)}
            n = config.expand_to
            lag += [0.0] * (n - len(lag))
            plain_first, plain_second = {}, {}
        rates = traffic.step(t_s, config.window_s)
        modulus = hash_bases[TOPIC].base if hash_bases else n
        _hash_newcomers(rates, first, second, modulus)
        if plain_first is not first:
            _hash_newcomers(rates, plain_first, plain_second, n)
        loads, _ = _window_loads(rates, first, placement, n)
        _, hashed = _window_loads(rates, plain_first, {}, n)
        for p in range(n):
            lag[p] = max(0.0, lag[p] + (loads[p] - capacity) * config.window_s)
        pkg = pkg_loads(rates, plain_first, plain_second, n)

        tenant_rates = tenant_rates_of(traffic, rates)
        # What the shard rule sees (the planner's unit for this window's mean): no residual,
        # no evacuated partition here, so the mean is the tenants' total over the partitions.
        mean = sum(rates.values()) / n
        unit = shard_unit(policy, mean)
        heaviest, window_elephants, window_unsplittable = _count_elephants(
            tenant_rates, unit, unit * (1 + policy.hysteresis), elephants, unsplittable
        )

        inp = PlannerInput(
            now_ms=now_ms,
            partition_counts={TOPIC: n},
            routes=routes,
            rates=tenant_rates,
            loads={(TOPIC, p): PartitionLoad(TOPIC, p, loads[p], round(lag[p])) for p in range(n)},
            history=history,
            policy=config.policy,
            hash_bases=hash_bases,
        )
        plan_started = time.perf_counter()
        result: Plan = plan(inp)
        plan_s = time.perf_counter() - plan_started
        routes = apply_changes(routes, result.changes, now_ms, epochs, decided_by="simulator")
        history = dict(result.history)
        for change in result.changes:
            actions[change.action.value] += 1
            if change.kind is ReasonKind.UNSPLITTABLE:
                isolations += 1
                isolated.add(change.tenant)
            if change.partitions is None:
                placement.pop(change.tenant, None)
            else:
                placement[change.tenant] = change.partitions

        stats.append(
            WindowStats(
                t_s=t_s,
                max_over_mean=_max_over_mean(loads),
                hash_max_over_mean=_max_over_mean(hashed),
                pkg_max_over_mean=_max_over_mean(pkg),
                moves=len(result.changes),
                sharded=sum(1 for parts in placement.values() if len(parts) > 1),
                routed=len(placement),
                max_lag=max(lag),
                plan_s=plan_s,
                elephants=window_elephants,
                unsplittable=window_unsplittable,
                stream_floor=heaviest / mean if mean > 0 else 0.0,
                partitions=n,
                fills=sum(1 for c in result.changes if c.kind is ReasonKind.FILL),
            )
        )
        if progress is not None:
            progress(index + 1, config.windows)

    return SimResult(
        config=config,
        windows=stats,
        actions=actions,
        routes=routes,
        seconds=time.perf_counter() - started,
        arrivals=traffic.arrivals,
        flashes=len(traffic.flashes),
        elephants=elephants,
        unsplittable=unsplittable,
        unsplittable_isolations=isolations,
        unsplittable_isolated=isolated,
        flash_periods=[(f.start_s, f.end_s) for f in traffic.flashes],
    )


def _hash_newcomers(rates: dict[str, float], first: dict[str, int], second: dict[str, int], n: int) -> None:
    """Each new tenant's murmur2 home, and its second choice for PKG."""
    for tenant in rates:
        if tenant not in first:
            first[tenant] = java_partition(tenant.encode(), n)
            second[tenant] = java_partition(f"{tenant}\x00second-choice".encode(), n)


def _window_loads(
    rates: dict[str, float], first: dict[str, int], placement: dict[str, tuple[int, ...]], n: int
) -> tuple[list[float], list[float]]:
    """(load per partition under the planner's routes, load per partition under hashing)."""
    loads = [0.0] * n
    hashed = [0.0] * n
    for tenant, rate in rates.items():
        home = first[tenant]
        hashed[home] += rate
        parts = placement.get(tenant)
        if parts is None:
            loads[home] += rate
        else:
            share = rate / len(parts)
            for p in parts:
                loads[p] += share
    return loads, hashed


def _count_elephants(
    tenant_rates: Mapping[TenantKey, TenantRate],
    unit: float,
    grow_above: float,
    elephants: set[str],
    unsplittable: set[str],
) -> tuple[float, int, int]:
    """(heaviest stream, elephants, unsplittable elephants) of one window; the tenants are
    added to the run's sets. An elephant is above the shard level; it is unsplittable when its
    heaviest stream alone exceeds a shard's unit and half of its rate (Placement.shard_cap)."""
    heaviest = 0.0
    window_elephants = window_unsplittable = 0
    for key, tr in tenant_rates.items():
        top = tr.records_per_s if tr.top_stream_per_s is None else tr.top_stream_per_s
        heaviest = max(heaviest, top)
        if tr.records_per_s > grow_above:
            window_elephants += 1
            elephants.add(key[1])
            if top > unit and 2 * top > tr.records_per_s:
                window_unsplittable += 1
                unsplittable.add(key[1])
    return heaviest, window_elephants, window_unsplittable


def tenant_rates_of(
    traffic: Traffic, rates: dict[str, float], topic: str = TOPIC
) -> dict[TenantKey, TenantRate]:
    """The planner's rates for one window: every tenant's heaviest ordered stream and stream
    count from its key distribution, as a producer reports them."""
    out: dict[TenantKey, TenantRate] = {}
    for tenant, rate in rates.items():
        profile = traffic.profile(tenant)
        out[(topic, tenant)] = TenantRate(
            topic, tenant, rate, top_stream_per_s=profile.top_stream(rate), streams=profile.keys
        )
    return out
