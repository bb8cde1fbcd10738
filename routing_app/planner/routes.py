"""The planner's view of the routes table: which routes it may use, and the table after a plan.

Shared by the worker, the simulator and the tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from routing_app.planner.model import PINNED, PlannedChange, TenantKey
from routing_app.routes.model import Route


def is_pinned(route: Route) -> bool:
    return route.attributes.get(PINNED) == "true"


def usable_partitions(route: Route, partition_count: int) -> tuple[int, ...] | None:
    """The partitions the producer really uses for ``route``; None when it hashes instead
    (the producer's own rule, ``Route.usable_for``)."""
    return route.partitions if route.usable_for(partition_count) else None


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
            topic=change.topic,
            tenant=change.tenant,
            partitions=change.partitions,
            epoch=epoch,
            reason=change.reason,
            updated_at_ms=now_ms,
            decided_by=decided_by,
        )
        if before is not None:
            route = replace(
                route, mode=before.mode, previous_partitions=before.partitions, attributes=before.attributes
            )
        table[key] = route
    return table
