"""What verify reports: a discrepancy between the two topics, its kinds, and how states are worded.

Both the alignment of records with events and verify's own checks find discrepancies, so the
finding and the sentences describing either side of it live apart from both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from routing_app.audit.records import EventRecord
from routing_app.routes.model import Route

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


def describe_route(route: Route | None) -> str:
    if route is None:
        return "default hashing (tombstone)"
    return f"{list(route.partitions)} epoch {route.epoch} {route.status.value} {route.mode.value}"


def describe_event_state(e: EventRecord | None) -> str:
    if e is None:
        return "no route change (default hashing)"
    if e.tombstone:
        return "default hashing (tombstone)"
    return f"{list(e.event.to_partitions)} epoch {e.event.to_epoch} {e.route_status} {e.event.mode}".rstrip()
