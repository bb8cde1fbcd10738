"""``verify``: every discrepancy between the routes topic and the events topic.

The routes topic should be the replay of the events topic; verify checks that record by record
(through the alignment), epoch by epoch and key by key, and reports what does not hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from routing_app.audit.alignment import align
from routing_app.audit.discrepancies import (
    EPOCH_CHAIN,
    EPOCH_REGRESSION,
    EVENT_WITHOUT_ROUTE,
    FINAL_STATE,
    RECORD_MISMATCH,
    ROUTE_WITHOUT_EVENT,
    UNDECODABLE,
    Discrepancy,
    describe_event_state,
    describe_route,
)
from routing_app.audit.records import (
    EVENTS,
    ROUTES,
    EventRecord,
    RouteRecord,
    RoutesLog,
    Undecodable,
    drop_duplicate_events,
    records_by_key,
    route_changes_by_key,
)
from routing_app.routes.model import Route, RouteStatus

# The order of one key's discrepancies in the report, by kind.
_KIND_ORDER = {
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


@dataclass(frozen=True)
class VerifyReport:
    """What verify found, and how much it checked."""

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
    kept, duplicate_events = drop_duplicate_events(events)
    alignment = align(log, kept)
    found = list(alignment.discrepancies)
    changes = route_changes_by_key(kept)
    records = records_by_key(log.records)

    for key, key_events in changes.items():
        found.extend(_event_epochs(key, key_events))
    for key, key_records in records.items():
        found.extend(
            _record_epochs(key, [r for r in key_records if (r.partition, r.offset) not in alignment.foreign])
        )

    for key in sorted(set(changes) | set(records)):
        final = _final_state(key, changes.get(key), records.get(key))
        if final is not None:
            found.append(final)
    found.extend(_unreadable(bad) for bad in undecodable)

    found.sort(key=lambda d: (d.key, _KIND_ORDER.get(d.kind, 99), d.route_offset or -1, d.event_offset or -1))
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


def _final_state(
    key: str, key_events: Sequence[EventRecord] | None, key_records: Sequence[RouteRecord] | None
) -> Discrepancy | None:
    """A discrepancy when the key's last record is not what the replay of its events left."""
    expected = key_events[-1] if key_events else None
    last = key_records[-1] if key_records else None
    expected_route = None if expected is None or expected.tombstone else expected
    found_route = None if last is None else last.route
    if expected_route is None and found_route is None:
        return None
    if expected_route is not None and found_route is not None and _final_matches(expected_route, found_route):
        return None
    return Discrepancy(
        key,
        FINAL_STATE,
        f"replay of events: {describe_event_state(expected)}",
        f"routes topic: {describe_route(found_route)}"
        if last is not None
        else "routes topic: no record (default hashing)",
        event_offset=None if expected is None else expected.offset,
        route_offset=None if last is None else last.offset,
    )


def _unreadable(bad: Undecodable) -> Discrepancy:
    return Discrepancy(
        bad.key or "?",
        UNDECODABLE,
        f"a readable record on {bad.topic}",
        bad.error,
        event_offset=bad.offset if bad.source == EVENTS else None,
        route_offset=bad.offset if bad.source == ROUTES else None,
    )


def _final_matches(e: EventRecord, route: Route) -> bool:
    return (
        e.event.to_epoch == route.epoch
        and tuple(e.event.to_partitions) == route.partitions
        and e.route_status == route.status.value
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


def _epoch_allowed(prev_epoch: int, prev_draining: bool, epoch: int, draining: bool) -> bool:
    """Strictly up, except a draining record's completion, which keeps its epoch."""
    return epoch > prev_epoch or (epoch == prev_epoch and prev_draining and not draining)
