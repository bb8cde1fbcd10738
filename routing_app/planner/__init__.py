"""The planner: decides which tenants to isolate, shard, merge back or move. Pure, no I/O.

The worker (``routing_app.app``) and the simulator (``routing_app.simulate``) call the same
``plan`` with the same dataclasses; only where the inputs come from differs.

One cycle (``cycle``), per data topic, in priority order (the move budget is shared, highest
first); each step is a module that works on the topic's ``placement.Placement``:

1. ``evacuate``: tenants on a partition an operator is evacuating (or on a route naming a
   partition that does not exist) move to the partitions with the most room;
2. ``shard``: a tenant above ``unit`` (a share of the mean partition load, capped by the
   capacity) gets at least ``ceil(rate / unit)`` shards, grown and shrunk with hysteresis, if
   it can be split: a strict tenant's ordered streams (one per secondary key, plus its keyless
   records) never span partitions, so it gets at most ``rate / heaviest stream`` shards once
   that stream is bigger than a unit (``Placement.shard_cap``); under two, it is isolated
   (``isolate.isolate_unsplittable``), the best one partition can do. A growing tenant takes
   the smallest count whose equal shares fit the roomiest partitions, else as many partitions
   as allowed (a burst spread thin moves nobody else); a shrink only goes as far as the bigger
   shares still fit;
3. then, until nothing changes (one step can open room for another): ``isolate`` the dominant
   tenant of a hot partition (one hot on its own goes where the fewest others share its
   load); ``rebalance`` partitions above mean x (1 + tolerance) down to
   mean x (1 + settle_tolerance) with the fewest moves (the smallest tenant that fixes it
   alone, else the largest that fits; if nothing fits whole, ``make_room`` by moving a few
   smaller tenants off a roomy partition, or as a last resort give a tenant more shards),
   never moving a tenant the merge rule would send straight back; ``merge`` cooled routed
   tenants back to hashing where their hash partition stays below the rebalance trigger;
4. ``rebase``, only for a topic an operator rebases after ``topics expand``: hashed tenants move
   to their home by the partition count, then the topic's hash base is dropped.

A topic grown by ``routing-app topics expand`` has a hash base (``HashBase``): its unrouted
tenants hash by the count before the growth, so none moved; rebalancing fills the partitions
added (``ReasonKind.FILL``) with the same strict moves as any other.

Every change carries its ``ReasonKind``, set by the step that decides it, and an English
``reason`` built by ``reasons`` (words only: metrics and audit group by the kind).

Loads are seen two ways: the estimate (tenant rates placed by the routes, plus residual) and
the broker's measured rate. A partition is over a level if either view is; targets must fit in
both; measured load and lag rank the targets that fit. What the broker measures beyond the
estimate stays with its partition as tenants move, so after a plan's changes apply, planning
again on the same rates and loads equal to the new estimates finds nothing to do.
"""

from routing_app.planner.cycle import plan
from routing_app.planner.loads import estimate_loads, shard_unit
from routing_app.planner.model import (
    PINNED,
    Action,
    HashBase,
    PartitionKey,
    PartitionLoad,
    Plan,
    PlannedChange,
    PlannerInput,
    Policy,
    ReasonKind,
    TenantHistory,
    TenantKey,
    TenantRate,
)
from routing_app.planner.routes import apply_changes, is_pinned, usable_partitions

__all__ = [
    "PINNED",
    "Action",
    "HashBase",
    "PartitionKey",
    "PartitionLoad",
    "Plan",
    "PlannedChange",
    "PlannerInput",
    "Policy",
    "ReasonKind",
    "TenantHistory",
    "TenantKey",
    "TenantRate",
    "apply_changes",
    "estimate_loads",
    "is_pinned",
    "plan",
    "shard_unit",
    "usable_partitions",
]
