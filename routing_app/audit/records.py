"""What the audit reads: route records and events as found on the two topics, and how to group them.

Inputs are what the reader found on the two topics, in offset order:

- the **routes topic** (compacted): for each key the latest record survives; older ones survive
  until compaction removes them (after ``min.compaction.lag.ms``). Kafka keeps the offsets of
  the survivors, so a hole in the offsets shows where compaction removed something.
- the **events topic** (never deleted): one event per decision of the single writer. Events
  with the actions below change no route; every other event with a tenant and a ``to_epoch``
  wrote one route record (or a tombstone when it has no ``to_partitions``).

Epochs per key never go down: every change takes a new one, except that the completion of a
strict move (``draining`` -> ``active``, or -> tombstone) keeps the epoch of its draining record.

This is the model the reader fills and every question (timeline, past table, verify) starts from,
so it sits apart from all of them.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from routing_app.routes.events import REPAIR, ReassignmentEvent
from routing_app.routes.model import Route, RouteStatus, route_key

# Events that record a decision but write no route record.
NO_ROUTE_CHANGE = frozenset({"rejected", "freeze", "unfreeze", REPAIR})
DRAINING = RouteStatus.DRAINING.value
ACTIVE = RouteStatus.ACTIVE.value
ROUTES, EVENTS = "routes", "events"

Partitions = tuple[int, ...]


@dataclass(frozen=True)
class RouteRecord:
    """One record still on the routes topic; ``route`` None is a tombstone."""

    offset: int
    timestamp_ms: int
    topic: str
    tenant: str
    route: Route | None
    partition: int = 0

    @property
    def key(self) -> str:
        return route_key(self.topic, self.tenant)


@dataclass(frozen=True)
class EventRecord:
    """One event on the events topic, with where it was."""

    offset: int
    timestamp_ms: int
    event: ReassignmentEvent
    partition: int = 0

    @property
    def key(self) -> str:
        return route_key(self.event.topic, self.event.tenant)

    @property
    def changes_route(self) -> bool:
        e = self.event
        if e.action in NO_ROUTE_CHANGE or e.to_epoch is None:
            return False
        if e.tenant:
            return True
        # A topic's hash base (topics expand): its writes carry epochs like a route's; an
        # expand that kept the base it found wrote nothing. Other topic-wide events (evacuate)
        # have no epoch.
        return not (e.action == "expand" and e.from_epoch == e.to_epoch)

    @property
    def tombstone(self) -> bool:
        """A route change that sends the tenant back to default hashing."""
        return self.changes_route and not self.event.to_partitions

    @property
    def draining(self) -> bool:
        return self.changes_route and not self.tombstone and self.event.status == DRAINING

    @property
    def repair(self) -> bool:
        return self.event.action == REPAIR and bool(self.event.tenant)

    @property
    def route_status(self) -> str:
        """The status of the route this event writes: events written before statuses existed
        name none, and those routes were active."""
        return self.event.status or ACTIVE


@dataclass(frozen=True)
class Undecodable:
    """A record the reader could not decode (poison): counted and reported, never fatal."""

    source: str  # ROUTES or EVENTS
    topic: str
    partition: int
    offset: int
    key: str | None
    error: str


@dataclass(frozen=True)
class RoutesLog:
    """The routes topic as read: its decoded records, and every offset still on it."""

    records: Sequence[RouteRecord]
    # partition -> sorted offsets of every record read, decodable or not.
    offsets: Mapping[int, Sequence[int]] = field(default_factory=dict)
    # partition -> (low, high) watermarks when the read began.
    bounds: Mapping[int, tuple[int, int]] = field(default_factory=dict)

    @classmethod
    def of(cls, records: Sequence[RouteRecord], high: int | None = None) -> RoutesLog:
        """A log holding exactly these records (for tests and in-memory use)."""
        by_partition: dict[int, list[int]] = defaultdict(list)
        for r in records:
            by_partition[r.partition].append(r.offset)
        offsets = {p: sorted(o) for p, o in by_partition.items()}
        bounds = {p: (0, (high if high is not None else o[-1] + 1)) for p, o in offsets.items()}
        if not offsets:
            bounds = {0: (0, high or 0)}
            offsets = {0: []}
        return cls(records, offsets, bounds)

    def complete_between(self, partition: int, after: int, before: int | None) -> bool:
        """True when every offset strictly between ``after`` and ``before`` (None: the end) is
        still on the topic, so no record there can have been removed by compaction."""
        present = self.offsets.get(partition, ())
        end = self.bounds.get(partition, (0, 0))[1] if before is None else before
        low = bisect_right(present, after)
        high = bisect_left(present, end)
        return high - low >= end - after - 1

    @property
    def compacted(self) -> bool:
        """True when compaction (or deletion) removed records: the offsets have holes."""
        return any(not self.complete_between(p, -1, None) for p in self.bounds)


def drop_duplicate_events(events: Sequence[EventRecord]) -> tuple[list[EventRecord], int]:
    """The events in topic order, each event id once (a retried send can write one twice), and
    how many were dropped."""
    seen: set[str] = set()
    kept: list[EventRecord] = []
    for e in sorted(events, key=lambda e: (e.partition, e.offset)):
        if e.event.event_id not in seen:
            seen.add(e.event.event_id)
            kept.append(e)
    return kept, len(events) - len(kept)


def route_changes_by_key(events: Iterable[EventRecord]) -> dict[str, list[EventRecord]]:
    """The events that wrote a route record, per route key, in the order given."""
    found: dict[str, list[EventRecord]] = defaultdict(list)
    for e in events:
        if e.changes_route:
            found[e.key].append(e)
    return found


def records_by_key(records: Iterable[RouteRecord]) -> dict[str, list[RouteRecord]]:
    """The route records per route key, in topic order."""
    found: dict[str, list[RouteRecord]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        found[r.key].append(r)
    return found
