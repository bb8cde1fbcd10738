"""The control command record. Plain data; the wire format is the ``control_command`` schema."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from routing_app.routes.model import RouteMode

CONTROL_SCHEMA = "control_command"


class ControlAction(StrEnum):
    PIN = "pin"
    UNPIN = "unpin"
    DRAIN = "drain"
    FREEZE = "freeze"
    UNFREEZE = "unfreeze"
    UNKNOWN = "unknown"  # a newer writer's action this reader does not know (schema default)


@dataclass(frozen=True)
class ControlCommand:
    action: ControlAction
    topic: str
    tenant: str
    issued_at_ms: int
    partitions: tuple[int, ...] = ()
    mode: RouteMode | None = None
    reason: str = ""
    issued_by: str = ""
    command_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_record(self) -> dict[str, Any]:
        return {
            "command_id": self.command_id, "action": self.action.value, "topic": self.topic,
            "tenant": self.tenant, "partitions": list(self.partitions),
            "mode": self.mode.value if self.mode else None, "reason": self.reason,
            "issued_by": self.issued_by, "issued_at": self.issued_at_ms,
        }

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> ControlCommand:
        return cls(
            action=ControlAction(r.get("action") or "unknown"), topic=r["topic"],
            tenant=r["tenant"], issued_at_ms=int(r["issued_at"]),
            partitions=tuple(r.get("partitions") or ()),
            mode=RouteMode(r["mode"]) if r.get("mode") else None, reason=r.get("reason", ""),
            issued_by=r.get("issued_by", ""), command_id=r["command_id"],
        )
