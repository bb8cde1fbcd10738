"""Reassignment events: one per decision of the route writer, appended to the events topic."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from routing_app.routes.model import Route

EVENT_SCHEMA = "reassignment_event"

# The writer put its own route back over a record somebody else wrote on the routes topic: the
# event explains the writer's repair records to the audit; it changes no decision.
REPAIR = "repair"
# At takeover, a route the writer never issued found in its restored table, kept as its own
# (writer_repair.RouteRepair.repair_table): unlike a repair, the replay takes its route.
ADOPT = "adopt"


class WriterReasonKind(StrEnum):
    """The ``reason_kind`` of events the planner did not decide (the planner's are its
    ``ReasonKind`` values, routing_app.planner.model): bounded labels, like the planner's, that
    metrics and the live page group by instead of the reason's words."""

    OPERATOR = "operator"  # an operator's command, applied
    REJECTED = "rejected"  # a command the writer refused
    REPAIR = "repair"  # the writer put its route back over a record it did not write
    # How a strict move's ordering pause ended (routing_app/control/drain.py)
    DRAINED = "drained"
    DRAIN_FORCED = "drain_timeout_forced"
    DRAIN_ABORTED = "drain_timeout_aborted"


@dataclass(frozen=True)
class ReassignmentEvent:
    topic: str
    tenant: str
    action: str
    reason: str
    decided_at_ms: int
    worker_id: str = ""
    from_partitions: tuple[int, ...] = ()
    to_partitions: tuple[int, ...] = ()
    from_epoch: int | None = None
    to_epoch: int | None = None
    mode: str = ""
    status: str = ""
    observed: Mapping[str, float] = field(default_factory=dict)
    command_id: str | None = None
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    # Why, as a bounded label set where the decision is made (ReasonKind or WriterReasonKind
    # value); None only in events written before the field existed (read by their words then).
    reason_kind: str | None = None

    @property
    def applied(self) -> bool:
        return self.action != "rejected"

    @classmethod
    def for_change(
        cls,
        before: Route | None,
        after: Route | None,
        *,
        action: str,
        reason: str,
        decided_at_ms: int,
        worker_id: str,
        command_id: str | None = None,
        observed: Mapping[str, float] | None = None,
        reason_kind: str | None = None,
    ) -> ReassignmentEvent:
        subject = after or before
        assert subject is not None, "a change has a route before or after it"
        return cls(
            topic=subject.topic,
            tenant=subject.tenant,
            action=action,
            reason=reason,
            decided_at_ms=decided_at_ms,
            worker_id=worker_id,
            from_partitions=before.partitions if before else (),
            to_partitions=after.partitions if after else (),
            from_epoch=before.epoch if before else None,
            to_epoch=after.epoch if after else None,
            mode=(after or subject).mode.value,
            status=after.status.value if after else "",
            observed=dict(observed or {}),
            command_id=command_id,
            reason_kind=reason_kind,
        )

    def to_record(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "topic": self.topic,
            "tenant": self.tenant,
            "action": self.action,
            "reason": self.reason,
            "from_partitions": list(self.from_partitions),
            "to_partitions": list(self.to_partitions),
            "from_epoch": self.from_epoch,
            "to_epoch": self.to_epoch,
            "mode": self.mode,
            "status": self.status,
            "observed": dict(self.observed),
            "command_id": self.command_id,
            "decided_at": self.decided_at_ms,
            "worker_id": self.worker_id,
            "reason_kind": self.reason_kind,
        }

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> ReassignmentEvent:
        return cls(
            topic=r["topic"],
            tenant=r["tenant"],
            action=r["action"],
            reason=r["reason"],
            decided_at_ms=int(r["decided_at"]),
            worker_id=r.get("worker_id", ""),
            from_partitions=tuple(r.get("from_partitions") or ()),
            to_partitions=tuple(r.get("to_partitions") or ()),
            from_epoch=r.get("from_epoch"),
            to_epoch=r.get("to_epoch"),
            mode=r.get("mode", ""),
            status=r.get("status", ""),
            observed=dict(r.get("observed") or {}),
            command_id=r.get("command_id"),
            event_id=r["event_id"],
            reason_kind=r.get("reason_kind"),
        )

    def to_json(self) -> dict[str, Any]:
        data = self.to_record()
        data["decided_at_ms"] = data.pop("decided_at")
        return data
