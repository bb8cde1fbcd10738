"""Pairs each route record with the event that wrote it, key by key.

Both the timeline (which record did this event write, if still there) and verify (which
records have no event, which events lost their record) need the pairing; it is the subtle part
of the audit (compaction holes, repeats, the writer's repairs), so it lives on its own.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from routing_app.audit.discrepancies import (
    EVENT_WITHOUT_ROUTE,
    RECORD_MISMATCH,
    ROUTE_WITHOUT_EVENT,
    Discrepancy,
    describe_event_state,
    describe_route,
)
from routing_app.audit.records import (
    EventRecord,
    RouteRecord,
    RoutesLog,
    records_by_key,
    route_changes_by_key,
)


@dataclass
class Alignment:
    """What the pairing found: the links, and the discrepancies on the way."""

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
    out: Alignment,
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


def align(log: RoutesLog, events: Sequence[EventRecord]) -> Alignment:
    """Pairs the records and events of every key (events already without duplicates)."""
    out = Alignment()
    records = records_by_key(log.records)
    changes = route_changes_by_key(events)
    repairs: dict[str, list[EventRecord]] = defaultdict(list)
    for e in events:
        if e.repair:
            repairs[e.key].append(e)
    for key in sorted(set(records) | set(changes)):
        _align_key(key, records.get(key, []), changes.get(key, []), log, out, repairs.get(key, ()))
    return out


def _same_change(r: RouteRecord, e: EventRecord) -> bool:
    """Does record ``r`` look like the write of event ``e`` (same epoch and status)?"""
    if r.route is None:
        return e.tombstone
    return not e.tombstone and e.event.to_epoch == r.route.epoch and e.route_status == r.route.status.value


def _content_differs(r: RouteRecord, e: EventRecord) -> bool:
    route = r.route
    if route is None:
        return False
    if tuple(e.event.to_partitions) != route.partitions:
        return True
    return bool(e.event.mode) and e.event.mode != route.mode.value
