"""The audit's pure core: route records and events in, timelines, past tables and discrepancies out.

Inputs are what the reader found on the two topics, in offset order:

- the **routes topic** (compacted): for each key the latest record survives; older ones survive
  until compaction removes them (after ``min.compaction.lag.ms``). Kafka keeps the offsets of
  the survivors, so a hole in the offsets shows where compaction removed something.
- the **events topic** (never deleted): one event per decision of the single writer. Events
  with the actions below change no route; every other event with a tenant and a ``to_epoch``
  wrote one route record (or a tombstone when it has no ``to_partitions``).

Epochs per key never go down: every change takes a new one, except that the completion of a
strict move (``draining`` -> ``active``, or -> tombstone) keeps the epoch of its draining record.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from routing_app.routes.events import REPAIR, ReassignmentEvent
from routing_app.routes.model import Route, RouteStatus, route_key

# Events that record a decision but write no route record.
NO_ROUTE_CHANGE = frozenset({"rejected", "freeze", "unfreeze", REPAIR})
DRAINING = RouteStatus.DRAINING.value
ACTIVE = RouteStatus.ACTIVE.value
PAUSE_KEY = "pause_ms"
ROUTES, EVENTS = "routes", "events"

Partitions = tuple[int, ...]


# -- inputs --------------------------------------------------------------------------------------
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
        return e.action not in NO_ROUTE_CHANGE and bool(e.tenant) and e.to_epoch is not None

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


# -- outputs -------------------------------------------------------------------------------------
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


# Discrepancy kinds.
EVENT_WITHOUT_ROUTE = "event-without-route"
ROUTE_WITHOUT_EVENT = "route-without-event"
RECORD_MISMATCH = "record-mismatch"
EPOCH_REGRESSION = "epoch-regression"
EPOCH_CHAIN = "epoch-chain"
FINAL_STATE = "final-state"
UNDECODABLE = "undecodable"


@dataclass(frozen=True)
class Discrepancy:
    key: str
    kind: str
    expected: str
    found: str
    event_offset: int | None = None
    route_offset: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "kind": self.kind,
            "expected": self.expected,
            "found": self.found,
            "event_offset": self.event_offset,
            "route_offset": self.route_offset,
        }


@dataclass(frozen=True)
class VerifyReport:
    discrepancies: list[Discrepancy]
    keys: int
    events: int
    route_changes: int
    route_records: int
    linked_records: int
    compacted: bool
    duplicate_events: int = 0
    duplicate_records: int = 0

    @property
    def ok(self) -> bool:
        return not self.discrepancies

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "keys": self.keys,
            "events": self.events,
            "route_changes": self.route_changes,
            "route_records": self.route_records,
            "linked_records": self.linked_records,
            "compacted": self.compacted,
            "duplicate_events": self.duplicate_events,
            "duplicate_records": self.duplicate_records,
            "discrepancies": [d.to_json() for d in self.discrepancies],
        }


# -- helpers -------------------------------------------------------------------------------------
def _dedup(events: Sequence[EventRecord]) -> tuple[list[EventRecord], int]:
    seen: set[str] = set()
    kept: list[EventRecord] = []
    for e in sorted(events, key=lambda e: (e.partition, e.offset)):
        if e.event.event_id not in seen:
            seen.add(e.event.event_id)
            kept.append(e)
    return kept, len(events) - len(kept)


def _by_key_events(events: Iterable[EventRecord]) -> dict[str, list[EventRecord]]:
    found: dict[str, list[EventRecord]] = defaultdict(list)
    for e in events:
        if e.changes_route:
            found[e.key].append(e)
    return found


def _by_key_records(records: Iterable[RouteRecord]) -> dict[str, list[RouteRecord]]:
    found: dict[str, list[RouteRecord]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        found[r.key].append(r)
    return found


def _status(e: EventRecord) -> str:
    return e.event.status or ACTIVE


def _same_change(r: RouteRecord, e: EventRecord) -> bool:
    """Does record ``r`` look like the write of event ``e`` (same epoch and status)?"""
    if r.route is None:
        return e.tombstone
    return not e.tombstone and e.event.to_epoch == r.route.epoch and _status(e) == r.route.status.value


def describe_route(route: Route | None) -> str:
    if route is None:
        return "default hashing (tombstone)"
    return f"{list(route.partitions)} epoch {route.epoch} {route.status.value} {route.mode.value}"


def describe_event_state(e: EventRecord | None) -> str:
    if e is None:
        return "no route change (default hashing)"
    if e.tombstone:
        return "default hashing (tombstone)"
    return f"{list(e.event.to_partitions)} epoch {e.event.to_epoch} {_status(e)} {e.event.mode}".rstrip()


def _content_differs(r: RouteRecord, e: EventRecord) -> bool:
    route = r.route
    if route is None:
        return False
    if tuple(e.event.to_partitions) != route.partitions:
        return True
    return bool(e.event.mode) and e.event.mode != route.mode.value


def _epoch_allowed(prev_epoch: int, prev_draining: bool, epoch: int, draining: bool) -> bool:
    """Strictly up, except a draining record's completion, which keeps its epoch."""
    return epoch > prev_epoch or (epoch == prev_epoch and prev_draining and not draining)


# -- alignment of records and events -------------------------------------------------------------
@dataclass
class _Alignment:
    # (event partition, event offset) -> the record that event wrote
    linked: dict[tuple[int, int], RouteRecord] = field(default_factory=dict)
    discrepancies: list[Discrepancy] = field(default_factory=list)
    duplicate_records: int = 0
    # (partition, offset) of the records no event wrote: somebody else's, kept out of the
    # epoch checks (each is reported once, as such).
    foreign: set[tuple[int, int]] = field(default_factory=set)


def _align_key(
    key: str,
    records: Sequence[RouteRecord],
    events: Sequence[EventRecord],
    log: RoutesLog,
    out: _Alignment,
    repairs: Sequence[EventRecord] = (),
) -> None:
    """Pairs each route record of ``key`` with the event that wrote it, in order.

    An event whose record is absent is fine only where the routes topic has a hole (compaction
    removed it) and a later record of the key exists (compaction keeps each key's latest).
    The writer's repair of a foreign record (``repairs``, in order) writes a tombstone, after
    repeating the foreign record when its table did not hold the key, and its own route again:
    the repeats count as repeats, the tombstone is linked to the repair's event.
    """
    partitions = {r.partition for r in records} or set(log.bounds) or {0}
    next_event = 0
    prev_offset: int | None = None  # offset of the last record matched (or skipped as a repeat)
    prev_record: RouteRecord | None = None
    last_seen: RouteRecord | None = None  # the record before, linked or not
    removals = [e for e in repairs if e.event.from_epoch is not None]

    def check_skipped(skipped: Sequence[EventRecord], before: int | None, is_tail: bool) -> None:
        for i, e in enumerate(skipped):
            last_of_key = is_tail and i == len(skipped) - 1
            removable = not last_of_key or e.tombstone  # tombstones themselves expire too
            after = -1 if prev_offset is None else prev_offset
            hole = any(not log.complete_between(p, after, before) for p in partitions)
            if not (removable and hole):
                out.discrepancies.append(
                    Discrepancy(
                        key,
                        EVENT_WITHOUT_ROUTE,
                        f"route record {describe_event_state(e)}",
                        "no such record on the routes topic",
                        event_offset=e.offset,
                    )
                )

    for r in records:
        before, last_seen = last_seen, r
        if r.route is not None and any(p is not None and r.route == p.route for p in (prev_record, before)):
            # The same value written twice: a producer retry, a reassertion, a repair.
            out.duplicate_records += 1
            prev_offset = r.offset
            continue
        match = next((j for j in range(next_event, len(events)) if _same_change(r, events[j])), None)
        if match is None and r.route is None and removals:
            out.linked[(removals[0].partition, removals[0].offset)] = r
            removals.pop(0)
            continue
        if match is None:
            out.foreign.add((r.partition, r.offset))
            out.discrepancies.append(
                Discrepancy(
                    key,
                    ROUTE_WITHOUT_EVENT,
                    "an event for every route record",
                    f"{describe_route(r.route)} with no event{_repaired_by(r, repairs)}",
                    route_offset=r.offset,
                )
            )
            continue
        check_skipped(events[next_event:match], r.offset, is_tail=False)
        e = events[match]
        if _content_differs(r, e):
            out.discrepancies.append(
                Discrepancy(
                    key,
                    RECORD_MISMATCH,
                    describe_event_state(e),
                    describe_route(r.route),
                    event_offset=e.offset,
                    route_offset=r.offset,
                )
            )
        out.linked[(e.partition, e.offset)] = r
        next_event = match + 1
        prev_offset = r.offset
        prev_record = r
    check_skipped(events[next_event:], None, is_tail=True)


def _repaired_by(r: RouteRecord, repairs: Sequence[EventRecord]) -> str:
    epoch = None if r.route is None else r.route.epoch
    repair = next((e for e in repairs if e.event.from_epoch == epoch), None)
    return "" if repair is None else f" (the writer repaired it: event offset {repair.offset})"


def _align(log: RoutesLog, events: Sequence[EventRecord]) -> _Alignment:
    out = _Alignment()
    records = _by_key_records(log.records)
    changes = _by_key_events(events)
    repairs: dict[str, list[EventRecord]] = defaultdict(list)
    for e in events:
        if e.repair:
            repairs[e.key].append(e)
    for key in sorted(set(records) | set(changes)):
        _align_key(key, records.get(key, []), changes.get(key, []), log, out, repairs.get(key, ()))
    return out


# -- timelines -----------------------------------------------------------------------------------
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
    kept, _ = _dedup(events)
    linked: dict[tuple[int, int], RouteRecord] = {}
    if log is not None:

        def wanted_key(t: str, n: str) -> bool:
            return topic in (None, t) and tenant in (None, n)

        mine = RoutesLog([r for r in log.records if wanted_key(r.topic, r.tenant)], log.offsets, log.bounds)
        linked = _align(mine, [e for e in kept if wanted_key(e.event.topic, e.event.tenant)]).linked
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
    kept, _ = _dedup(events)
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
            status="" if rec.tombstone else _status(rec),
            mode=e.mode,
            since_ms=e.decided_at_ms,
            action=e.action,
            reason=e.reason,
            event_offset=rec.offset,
        )
    if include_hashed:
        return table
    return {k: p for k, p in table.items() if p.partitions is not None}


# -- verify --------------------------------------------------------------------------------------
def verify(
    log: RoutesLog, events: Sequence[EventRecord], undecodable: Sequence[Undecodable] = ()
) -> VerifyReport:
    """Every discrepancy between the routes topic and the events topic.

    - each route record still on the routes topic was written by an event (same key, epoch and
      status; and the same partitions and mode), and each route-changing event's record is there
      unless compaction removed it (a hole in the offsets, and a later record of the key);
    - per key, epochs go up (events and route records alike), except a draining route's
      completion, which keeps its epoch; and each event starts from the epoch the previous one
      left (``from_epoch``);
    - the last record of each key (absent or a tombstone = default hashing) equals the replay of
      the events;
    - undecodable records on either topic.
    """
    kept, duplicate_events = _dedup(events)
    alignment = _align(log, kept)
    found = list(alignment.discrepancies)
    changes = _by_key_events(kept)
    records = _by_key_records(log.records)

    for key, key_events in changes.items():
        found.extend(_event_epochs(key, key_events))
    for key, key_records in records.items():
        found.extend(
            _record_epochs(key, [r for r in key_records if (r.partition, r.offset) not in alignment.foreign])
        )

    for key in sorted(set(changes) | set(records)):
        expected = changes[key][-1] if key in changes else None
        last = records[key][-1] if key in records else None
        expected_route = None if expected is None or expected.tombstone else expected
        found_route = None if last is None else last.route
        if expected_route is None and found_route is None:
            continue
        if (
            expected_route is not None
            and found_route is not None
            and _final_matches(expected_route, found_route)
        ):
            continue
        found.append(
            Discrepancy(
                key,
                FINAL_STATE,
                f"replay of events: {describe_event_state(expected)}",
                f"routes topic: {describe_route(found_route)}"
                if last is not None
                else "routes topic: no record (default hashing)",
                event_offset=None if expected is None else expected.offset,
                route_offset=None if last is None else last.offset,
            )
        )

    for bad in undecodable:
        found.append(
            Discrepancy(
                bad.key or "?",
                UNDECODABLE,
                f"a readable record on {bad.topic}",
                bad.error,
                event_offset=bad.offset if bad.source == EVENTS else None,
                route_offset=bad.offset if bad.source == ROUTES else None,
            )
        )

    order = {
        kind: i
        for i, kind in enumerate(
            (
                UNDECODABLE,
                ROUTE_WITHOUT_EVENT,
                EVENT_WITHOUT_ROUTE,
                RECORD_MISMATCH,
                EPOCH_REGRESSION,
                EPOCH_CHAIN,
                FINAL_STATE,
            )
        )
    }
    found.sort(key=lambda d: (d.key, order.get(d.kind, 99), d.route_offset or -1, d.event_offset or -1))
    return VerifyReport(
        discrepancies=found,
        keys=len(set(changes) | set(records)),
        events=len(kept),
        route_changes=sum(len(v) for v in changes.values()),
        route_records=len(log.records),
        linked_records=len(alignment.linked),
        compacted=log.compacted,
        duplicate_events=duplicate_events,
        duplicate_records=alignment.duplicate_records,
    )


def _final_matches(e: EventRecord, route: Route) -> bool:
    return (
        e.event.to_epoch == route.epoch
        and tuple(e.event.to_partitions) == route.partitions
        and _status(e) == route.status.value
        and (not e.event.mode or e.event.mode == route.mode.value)
    )


def _event_epochs(key: str, events: Sequence[EventRecord]) -> list[Discrepancy]:
    found: list[Discrepancy] = []
    prev: EventRecord | None = None
    for e in events:
        epoch = e.event.to_epoch
        assert epoch is not None  # route changes have one
        if prev is not None:
            prev_epoch = prev.event.to_epoch
            assert prev_epoch is not None
            if not _epoch_allowed(prev_epoch, prev.draining, epoch, e.draining):
                found.append(
                    Discrepancy(
                        key,
                        EPOCH_REGRESSION,
                        f"epoch above {prev_epoch}"
                        + (" (or equal: completes a drain)" if prev.draining else ""),
                        f"event {e.event.action} with epoch {epoch}",
                        event_offset=e.offset,
                    )
                )
            chained = None if prev.tombstone else prev_epoch
            if e.event.from_epoch != chained:
                found.append(
                    Discrepancy(
                        key,
                        EPOCH_CHAIN,
                        f"from_epoch {chained} (where the previous event left it)",
                        f"event {e.event.action} with from_epoch {e.event.from_epoch}",
                        event_offset=e.offset,
                    )
                )
        prev = e
    return found


def _record_epochs(key: str, records: Sequence[RouteRecord]) -> list[Discrepancy]:
    found: list[Discrepancy] = []
    prev: Route | None = None
    tombstone_since = False
    for r in records:
        if r.route is None:
            tombstone_since = True
            continue
        if prev is not None and r.route != prev:
            draining = prev.status is RouteStatus.DRAINING and not tombstone_since
            if not _epoch_allowed(
                prev.epoch, draining, r.route.epoch, r.route.status is RouteStatus.DRAINING
            ):
                found.append(
                    Discrepancy(
                        key,
                        EPOCH_REGRESSION,
                        f"route epoch above {prev.epoch}",
                        f"route record with epoch {r.route.epoch}",
                        route_offset=r.offset,
                    )
                )
        prev = r.route
        tombstone_since = False
    return found
