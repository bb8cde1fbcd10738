"""Load arithmetic the placement state and its callers share: clean rates, the shard unit,
the estimated load of every partition, and murmur2 homes."""

from __future__ import annotations

import math
from collections.abc import Mapping

from routing_app.client.partitioner import java_partition
from routing_app.planner.model import PartitionKey, Policy, TenantKey, TenantRate
from routing_app.planner.routes import usable_partitions
from routing_app.routes.model import Route


def shard_unit(policy: Policy, mean: float) -> float:
    """What one shard (or an unsharded tenant) should carry at most, for a mean partition load."""
    capacity = policy.partition_capacity
    return min(
        policy.target_load * capacity, max(policy.shard_fill * mean, policy.min_shard_fraction * capacity)
    )


def estimate_loads(
    partition_counts: Mapping[str, int],
    routes: Mapping[TenantKey, Route],
    rates: Mapping[TenantKey, TenantRate],
    residual: Mapping[PartitionKey, float] | None = None,
    moduli: Mapping[str, int] | None = None,
) -> dict[PartitionKey, float]:
    """Records/s per partition if every tenant sends its rate where its route (or murmur2) says;
    ``moduli``: what a topic's unrouted tenants hash by where it is not its count (a base)."""
    parts: dict[str, list[list[float]]] = {
        t: [[] for _ in range(n)] for t, n in partition_counts.items() if n > 0
    }
    for (topic, tenant), tr in rates.items():
        shares = parts.get(topic)
        rate = clean(tr.records_per_s)
        if shares is None or rate <= 0:
            continue
        route = routes.get((topic, tenant))
        placed = usable_partitions(route, len(shares)) if route is not None else None
        if placed is None:
            modulus = len(shares) if moduli is None else moduli.get(topic, len(shares))
            shares[java_partition(tenant.encode(), modulus)].append(rate)
        else:
            for p in placed:
                shares[p].append(rate / len(placed))
    out: dict[PartitionKey, float] = {}
    for topic, per_partition in parts.items():
        for p, values in enumerate(per_partition):
            extra = clean((residual or {}).get((topic, p), 0.0))
            out[(topic, p)] = math.fsum(values) + extra
    return out


_HOMES: dict[int, dict[str, int]] = {}
_HOMES_LIMIT = 2_000_000


def homes(partition_count: int) -> dict[str, int]:
    """Memo of murmur2 homes for one partition count. A pure function's cache: it changes no
    result, only saves re-hashing every tenant every cycle."""
    if sum(len(cache) for cache in _HOMES.values()) > _HOMES_LIMIT:
        _HOMES.clear()
    return _HOMES.setdefault(partition_count, {})


def clean(value: float) -> float:
    # A NaN or negative rate from a broken report must not poison every sum.
    return value if value > 0 and math.isfinite(value) else 0.0


def offset(measured: float, estimate: float) -> float:
    # A measurement summed in another order differs from the estimate by rounding only.
    off = clean(measured) - estimate
    return 0.0 if abs(off) <= 1e-9 * max(1.0, estimate) else off
