"""The planner: decides which tenants to isolate, shard, merge back or move. Pure, no I/O.

The worker (``routing_app.app``) and the simulator (``routing_app.simulate``) call the same
``plan`` with the same dataclasses; only where the inputs come from differs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from routing_app.routes.model import Route

TenantKey = tuple[str, str]  # (data topic, tenant)
PartitionKey = tuple[str, int]  # (data topic, partition)


class Action(StrEnum):
    ISOLATE = "isolate"  # a tenant that makes its partition hot gets a partition of its own
    SHARD = "shard"  # a tenant above one partition's capacity is spread over several (grow/shrink)
    MERGE = "merge"  # a cooled tenant returns to default hashing (tombstone)
    REBALANCE = "rebalance"  # a medium tenant moves off a partition that stays above the mean
    DRAIN = "drain"  # a tenant moves off a partition an operator is draining


@dataclass(frozen=True)
class Policy:
    """Knobs with defaults that suit the demo and the simulator; rates are records per second."""

    partition_capacity: float = 5_000.0
    # A partition is hot above max(hot_threshold x mean, hot_floor_fraction x capacity).
    hot_threshold: float = 1.5
    hot_floor_fraction: float = 0.2
    # A shard should carry about target_load x capacity: shards = ceil(rate / that).
    target_load: float = 0.7
    # Rebalance when a partition stays above mean x (1 + tolerance).
    tolerance: float = 0.10
    # Relative change a tenant's rate must show before its shard count changes (no flapping).
    hysteresis: float = 0.25
    # A tenant is not moved again within this long of its last move.
    min_dwell_s: float = 60.0
    # A routed tenant whose rate stays below merge_back_threshold x its partition's fair share
    # for cooldown_s merges back to hashing.
    cooldown_s: float = 30.0
    merge_back_threshold: float = 0.3
    max_moves_per_cycle: int = 5
    max_shards: int = 8


@dataclass(frozen=True)
class TenantRate:
    topic: str
    tenant: str
    records_per_s: float
    bytes_per_s: float = 0.0


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


def plan(inp: PlannerInput) -> Plan:
    """The changes for one complete window. Deterministic for the same input."""
    raise NotImplementedError
