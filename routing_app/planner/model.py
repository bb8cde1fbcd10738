"""The planner's model: its knobs (Policy), its inputs, and what it decides (Plan, PlannedChange).

Every decision names its ``Action`` (what happens to the route) and its ``ReasonKind`` (why),
chosen by the planning step that makes it; the English sentence (``planner.reasons``) only
explains it to a person. Metrics and audit group by the kind, never by the sentence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from routing_app.routes.model import REBASE_ATTRIBUTE, REBASE_REQUESTED, Route, RouteStatus, hash_modulus

TenantKey = tuple[str, str]  # (data topic, tenant)
PartitionKey = tuple[str, int]  # (data topic, partition)

PINNED = "pinned"


class Action(StrEnum):
    ISOLATE = "isolate"  # a tenant that makes its partition hot gets a partition of its own
    SHARD = "shard"  # a tenant too big for one partition is spread over several (grow/shrink)
    MERGE = "merge"  # a cooled tenant returns to default hashing (tombstone)
    REBALANCE = "rebalance"  # a medium tenant moves off a partition that stays above the mean
    # a tenant moves off a partition an operator is evacuating (or off a route it cannot use)
    EVACUATE = "evacuate"
    # after `topics expand`: a hashed tenant moves to where hashing by the new count puts it,
    # and once none is left the topic's hash base is dropped (the base's tombstone)
    REBASE = "rebase"


class ReasonKind(StrEnum):
    """Why the planner made a change: a short, bounded label (the values are the metrics'
    ``reason_kind`` labels, so dashboards keep their series). Each kind belongs to one action."""

    # isolate
    HOT_PARTITION = "hot_partition"  # the tenant makes its partition hot
    UNSPLITTABLE = "unsplittable"  # too big for a shard, its heaviest ordered stream over half
    # shard
    SHARD_GROW = "shard_grow"  # above its shards' worth: more shards
    SHARD_SHRINK = "shard_shrink"  # well below it: fewer shards
    SHARD_SPLIT = "shard_split"  # last resort for a hot partition whose tenants fit nowhere whole
    COOLED_KEPT_ONE_SHARD = "cooled_kept_one_shard"  # cooled, hash partition full: one shard
    # rebalance
    OVER_MEAN = "over_mean"  # its partition stays above mean x (1 + tolerance)
    MAKING_ROOM = "making_room"  # moved aside so a bigger tenant from a hot partition fits
    FILL = "fill"  # moved onto a partition `topics expand` added, for balance
    # merge
    COOLED = "cooled"  # below the merge-back level for the cool-down: back to hashing
    # rebase
    REBASE_HOME = "rebase_home"  # to its murmur2 home by the topic's partition count
    BASE_DROPPED = "base_dropped"  # no hashed tenant left off its home: the base goes
    # evacuate
    PARTITION_MISSING = "partition_missing"  # its route names a partition that does not exist
    PARTITION_EVACUATED = "partition_evacuated"  # an operator evacuates its partition
    DUPLICATE_PARTITION = "duplicate_partition"  # its route names a partition twice

    @property
    def action(self) -> Action:
        return _ACTION_OF[self]


_ACTION_OF: dict[ReasonKind, Action] = {
    ReasonKind.HOT_PARTITION: Action.ISOLATE,
    ReasonKind.UNSPLITTABLE: Action.ISOLATE,
    ReasonKind.SHARD_GROW: Action.SHARD,
    ReasonKind.SHARD_SHRINK: Action.SHARD,
    ReasonKind.SHARD_SPLIT: Action.SHARD,
    ReasonKind.COOLED_KEPT_ONE_SHARD: Action.SHARD,
    ReasonKind.OVER_MEAN: Action.REBALANCE,
    ReasonKind.MAKING_ROOM: Action.REBALANCE,
    ReasonKind.FILL: Action.REBALANCE,
    ReasonKind.REBASE_HOME: Action.REBASE,
    ReasonKind.BASE_DROPPED: Action.REBASE,
    ReasonKind.COOLED: Action.MERGE,
    ReasonKind.PARTITION_MISSING: Action.EVACUATE,
    ReasonKind.PARTITION_EVACUATED: Action.EVACUATE,
    ReasonKind.DUPLICATE_PARTITION: Action.EVACUATE,
}


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
class HashBase:
    """A data topic grown by ``routing-app topics expand``: its unrouted tenants hash by
    ``base`` (the count before the growth), not by its partition count, so none moved."""

    base: int
    # An operator asked to rebase: the hashed tenants move (strict drains) to their home by the
    # partition count, then the base is dropped.
    rebasing: bool = False
    # Its write is still draining (being announced, or being dropped): the producers' answers
    # are not all in.
    draining: bool = False

    @classmethod
    def of(cls, route: Route) -> HashBase:
        return cls(
            len(route.partitions),
            route.attributes.get(REBASE_ATTRIBUTE) == REBASE_REQUESTED,
            route.status is RouteStatus.DRAINING,
        )


@dataclass(frozen=True)
class PlannerInput:
    now_ms: int
    partition_counts: Mapping[str, int]  # data topic -> partitions
    routes: Mapping[TenantKey, Route]
    rates: Mapping[TenantKey, TenantRate]  # complete window; tenants not listed send ~0
    loads: Mapping[PartitionKey, PartitionLoad]  # broker ground truth (may be empty)
    history: Mapping[TenantKey, TenantHistory] = field(default_factory=dict)
    frozen: frozenset[TenantKey] = frozenset()  # operator froze: never moved automatically
    evacuated: frozenset[PartitionKey] = frozenset()  # operator evacuates: move off, never target
    # Residual traffic (not attributed to any reported tenant) per partition.
    residual: Mapping[PartitionKey, float] = field(default_factory=dict)
    policy: Policy = field(default_factory=Policy)
    # False when some usage partitions never reported the window (planned after the wait):
    # tenants on them look idle, so a hot partition's load may have no known cause. Then only
    # tenants seen hot move (isolate, shard); no rebalance or merge back acts on the gaps.
    complete: bool = True
    # Data topic -> its hash base, for topics grown by `topics expand` (see HashBase).
    hash_bases: Mapping[str, HashBase] = field(default_factory=dict)

    def modulus(self, topic: str) -> int:
        """What the topic's unrouted tenants hash by: its base, else its partition count."""
        n = self.partition_counts.get(topic, 0)
        base = self.hash_bases.get(topic)
        return hash_modulus(n, None if base is None else base.base)

    def moduli(self) -> dict[str, int]:
        """``modulus`` of every topic with a hash base (the others hash by their count)."""
        return {topic: self.modulus(topic) for topic in self.hash_bases}


@dataclass(frozen=True)
class PlannedChange:
    topic: str
    tenant: str
    action: Action
    # New placement; None means tombstone (back to default hashing).
    partitions: tuple[int, ...] | None
    reason: str
    observed: Mapping[str, float] = field(default_factory=dict)
    # Why, as a bounded label set by the step that decided (``reason`` says it in English).
    # Keyword-only, so the positional fields above keep their places.
    kind: ReasonKind = field(kw_only=True)

    def __post_init__(self) -> None:
        if self.kind.action is not self.action:
            raise ValueError(
                f"reason kind {self.kind} belongs to action {self.kind.action}, not {self.action}"
            )


@dataclass(frozen=True)
class Plan:
    changes: tuple[PlannedChange, ...]
    # History to carry into the next cycle (cool-down clocks, last move times).
    history: Mapping[TenantKey, TenantHistory]
    # The move budget ran out while the planner still wanted to act: the next cycle continues.
    truncated: bool = False
