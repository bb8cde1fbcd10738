"""The demo's workload through ``plan`` without Kafka, with the live loop's timing.

``routing-app demo --offline`` and the tests use it to see which decisions a live demo makes.
Unlike ``run_simulation`` (one exact figure per window), it keeps the live loop's timing:
records are counted in 0.1 s ticks; a window's usage is complete ``plan_delay_s`` after its
end, when the plan runs; the broker's write rates the planner also sees are those of the same
window (the live loop reads them by timestamp at the window's edges), so they show where the
window's records went, moves that had not yet taken effect included; a move takes effect
``drain_s`` after the plan (a strict move's stop-and-wait).

The demo's producer sends key-only records (``key=tenant``): every tenant is one ordered stream,
so the planner never shards one (a strict stream stays on one partition); it isolates it.
``keys`` replays the same traffic as if each tenant spread its records evenly over that many
secondary keys, which the planner may shard.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from routing_app.client.partitioner import java_partition
from routing_app.demo.traffic import TrafficPlan
from routing_app.planner import (
    PartitionLoad,
    PlannedChange,
    PlannerInput,
    Policy,
    TenantHistory,
    TenantKey,
    TenantRate,
    apply_changes,
    plan,
)
from routing_app.routes.model import Route

_TICK_S = 0.1
_EPOCH_MS = 1_700_000_000_000


@dataclass
class Replay:
    # (seconds since the traffic started, change), in decision order.
    decisions: list[tuple[float, PlannedChange]] = field(default_factory=list)
    cycles: int = 0

    def counts(self) -> Counter[str]:
        return Counter(change.action.value for _, change in self.decisions)


def replay_demo(
    traffic: TrafficPlan,
    policy: Policy,
    duration_s: float,
    *,
    partitions: int = 12,
    window_s: float = 5.0,
    plan_delay_s: float = 2.0,
    drain_s: float = 1.0,
    seed: int = 1,
    keys: int = 0,
) -> Replay:
    """Every decision ``plan`` makes on ``traffic`` over ``duration_s`` seconds. ``keys``:
    secondary keys per tenant, records spread evenly (0: key-only records, as the demo)."""
    rng = random.Random(seed)
    topic, n = traffic.topic, partitions
    homes: dict[str, int] = {}
    placement: dict[str, tuple[int, ...]] = {}
    pending: list[tuple[float, str, tuple[int, ...] | None]] = []
    routes: dict[TenantKey, Route] = {}
    history: dict[TenantKey, TenantHistory] = {}
    epochs: dict[TenantKey, int] = {}
    per_second: list[Counter[str]] = []
    # Records written to each partition in each second (fractions for shards).
    written: list[list[float]] = []
    next_plan = window_s + plan_delay_s
    result = Replay()
    per_tick = max(1, round(traffic.records_per_s * _TICK_S))
    for step in range(round(duration_s / _TICK_S) + 1):
        t = step * _TICK_S
        for due in [item for item in pending if item[0] <= t + 1e-9]:
            pending.remove(due)
            _, tenant, parts = due
            if parts is None:
                placement.pop(tenant, None)
            else:
                placement[tenant] = parts
        names, weights = traffic.weights(traffic.hot_start_s <= t < traffic.hot_end_s)
        sent = Counter(rng.choices(names, weights=weights, k=per_tick))
        second = int(t)
        while len(per_second) <= second:
            per_second.append(Counter())
            written.append([0.0] * n)
        per_second[second].update(sent)
        for tenant, count in sent.items():
            parts = placement.get(tenant)
            if parts is None:
                home = homes.get(tenant)
                if home is None:
                    home = homes[tenant] = java_partition(tenant.encode(), n)
                written[second][home] += count
            else:
                for p in parts:
                    written[second][p] += count / len(parts)
        if t + 1e-9 < next_plan:
            continue
        end = next_plan - plan_delay_s
        usage: Counter[str] = Counter()
        in_window = [0.0] * n
        for s in range(max(0, round(end - window_s)), round(end)):
            usage.update(per_second[s])
            in_window = [a + b for a, b in zip(in_window, written[s], strict=True)]
        loads = {(topic, p): PartitionLoad(topic, p, in_window[p] / window_s) for p in range(n)}
        inp = PlannerInput(
            now_ms=_EPOCH_MS + round(end * 1000),
            partition_counts={topic: n},
            routes=routes,
            rates={
                (topic, tenant): _rate(topic, tenant, count / window_s, keys)
                for tenant, count in usage.items()
            },
            loads=loads,
            history=history,
            policy=policy,
        )
        decided = plan(inp)
        routes = apply_changes(
            routes, decided.changes, _EPOCH_MS + round(t * 1000), epochs, decided_by="replay"
        )
        history = dict(decided.history)
        for change in decided.changes:
            result.decisions.append((t, change))
            pending.append((t + drain_s, change.tenant, change.partitions))
        result.cycles += 1
        next_plan += window_s
    return result


def _rate(topic: str, tenant: str, rate: float, keys: int) -> TenantRate:
    """What the producers report: one stream carrying everything without keys, else the
    heaviest of ``keys`` even ones."""
    if keys <= 0:
        return TenantRate(topic, tenant, rate, top_stream_per_s=rate, streams=1)
    return TenantRate(topic, tenant, rate, top_stream_per_s=rate / keys, streams=keys)
