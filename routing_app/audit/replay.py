"""Replaying the events: every decision as a timeline, and the routing table at a past moment.

These answer "what happened" and "where was it"; they trust the events topic, while verify
(apart, in ``consistency.py``) checks it against the routes topic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from routing_app.audit.alignment import align
from routing_app.audit.records import EventRecord, Partitions, RouteRecord, RoutesLog, drop_duplicate_events
from routing_app.routes.model import route_key

# The key of a drain's pause in an event's ``observed`` figures.
PAUSE_KEY = "pause_ms"


@dataclass(frozen=True)
class Step:
    """One event in a tenant's history, with the placement in force after it."""

    key: str
    topic: str
    tenant: str
    at_ms: int
    action: str
    reason: str
    status: str
    mode: str
    from_partitions: Partitions
    to_partitions: Partitions
    from_epoch: int | None
    to_epoch: int | None
    changes_route: bool
    placement: Partitions | None  # after this event; None = default hashing
    epoch: int | None  # the route epoch in force after this event
    pause_ms: float | None
    observed: Mapping[str, float]
    worker_id: str
    command_id: str | None
    event_id: str
    event_offset: int
    route_offset: int | None  # the route record this event wrote, if still on the routes topic

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "topic": self.topic,
            "tenant": self.tenant,
            "at_ms": self.at_ms,
            "action": self.action,
            "reason": self.reason,
            "status": self.status,
            "mode": self.mode,
            "from_partitions": list(self.from_partitions),
            "to_partitions": list(self.to_partitions),
            "from_epoch": self.from_epoch,
            "to_epoch": self.to_epoch,
            "changes_route": self.changes_route,
            "placement": None if self.placement is None else list(self.placement),
            "epoch": self.epoch,
            "pause_ms": self.pause_ms,
            "observed": dict(self.observed),
            "worker_id": self.worker_id,
            "command_id": self.command_id,
            "event_id": self.event_id,
            "event_offset": self.event_offset,
            "route_offset": self.route_offset,
        }


@dataclass(frozen=True)
class Placement:
    """Where a tenant's records went at some moment, and the decision that put them there."""

    topic: str
    tenant: str
    partitions: Partitions | None  # None = default hashing
    epoch: int | None
    status: str
    mode: str
    since_ms: int
    action: str
    reason: str
    event_offset: int

    @property
    def key(self) -> str:
        return route_key(self.topic, self.tenant)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "topic": self.topic,
            "tenant": self.tenant,
            "partitions": None if self.partitions is None else list(self.partitions),
            "hashed": self.partitions is None,
            "epoch": self.epoch,
            "status": self.status,
            "mode": self.mode,
            "since_ms": self.since_ms,
            "action": self.action,
            "reason": self.reason,
            "event_offset": self.event_offset,
        }


def timeline(
    events: Sequence[EventRecord],
    log: RoutesLog | None = None,
    *,
    topic: str | None = None,
    tenant: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
) -> list[Step]:
    """Every event in topic order, each with the placement after it and the route record it wrote
    (when ``log`` is given and the record is still there). Filters apply after the fold, so a
    step's placement accounts for everything before it."""
    kept, _ = drop_duplicate_events(events)
    linked: dict[tuple[int, int], RouteRecord] = {}
    if log is not None:

        def wanted_key(t: str, n: str) -> bool:
            return topic in (None, t) and tenant in (None, n)

        mine = RoutesLog([r for r in log.records if wanted_key(r.topic, r.tenant)], log.offsets, log.bounds)
        linked = align(mine, [e for e in kept if wanted_key(e.event.topic, e.event.tenant)]).linked
    placement: dict[str, tuple[Partitions | None, int | None]] = {}
    steps: list[Step] = []
    for rec in kept:
        e = rec.event
        key = rec.key
        if rec.changes_route:
            placement[key] = (None if rec.tombstone else tuple(e.to_partitions), e.to_epoch)
        where, epoch = placement.get(key, (None, None))
        if not _wanted(e.topic, e.tenant, e.decided_at_ms, topic, tenant, since_ms, until_ms):
            continue
        route = linked.get((rec.partition, rec.offset))
        pause = e.observed.get(PAUSE_KEY)
        steps.append(
            Step(
                key=key,
                topic=e.topic,
                tenant=e.tenant,
                at_ms=e.decided_at_ms,
                action=e.action,
                reason=e.reason,
                status=e.status,
                mode=e.mode,
                from_partitions=tuple(e.from_partitions),
                to_partitions=tuple(e.to_partitions),
                from_epoch=e.from_epoch,
                to_epoch=e.to_epoch,
                changes_route=rec.changes_route,
                placement=where,
                epoch=epoch,
                pause_ms=None if pause is None else float(pause),
                observed=dict(e.observed),
                worker_id=e.worker_id,
                command_id=e.command_id,
                event_id=e.event_id,
                event_offset=rec.offset,
                route_offset=None if route is None else route.offset,
            )
        )
    return steps


def _wanted(
    topic: str,
    tenant: str,
    at_ms: int,
    want_topic: str | None,
    want_tenant: str | None,
    since_ms: int | None,
    until_ms: int | None,
) -> bool:
    return (
        (want_topic is None or topic == want_topic)
        and (want_tenant is None or tenant == want_tenant)
        and (since_ms is None or at_ms >= since_ms)
        and (until_ms is None or at_ms <= until_ms)
    )


def table_at(
    events: Sequence[EventRecord], t_ms: int, *, include_hashed: bool = False
) -> dict[str, Placement]:
    """The routing table as the events say it was at ``t_ms`` (decisions made up to then), by
    route key. With ``include_hashed``, tenants a tombstone had sent back to default hashing are
    kept, with ``partitions`` None and the tombstone's reason."""
    kept, _ = drop_duplicate_events(events)
    table: dict[str, Placement] = {}
    for rec in kept:
        e = rec.event
        if not rec.changes_route or e.decided_at_ms > t_ms:
            continue
        table[rec.key] = Placement(
            topic=e.topic,
            tenant=e.tenant,
            partitions=None if rec.tombstone else tuple(e.to_partitions),
            epoch=e.to_epoch,
            status="" if rec.tombstone else rec.route_status,
            mode=e.mode,
            since_ms=e.decided_at_ms,
            action=e.action,
            reason=e.reason,
            event_offset=rec.offset,
        )
    if include_hashed:
        return table
    return {k: p for k, p in table.items() if p.partitions is not None}
