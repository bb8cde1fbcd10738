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
    EVACUATE = "evacuate"  # move every tenant off the given partitions of a topic
    FREEZE = "freeze"
    UNFREEZE = "unfreeze"
    # `topics expand`: record the topic's hash base (tenant ""), partitions = (the new count,)
    EXPAND = "expand"
    # `topics rebase`: hashed tenants move to their home by the count, then the base goes
    REBASE = "rebase"
    UNKNOWN = "unknown"  # a newer writer's action this reader does not know (schema default)


# The control_command schema's enum symbol for EVACUATE is "drain", the command's name before
# "drain" came to mean only a strict move's ordering pause. Commands already on the control
# topic carry that symbol, and renaming a symbol is not a compatible schema change (a reader of
# the new schema could not read them), so the wire keeps "drain" and only the code says
# "evacuate".
_WIRE_SYMBOL = {ControlAction.EVACUATE: "drain"}
_ACTION_OF_SYMBOL = {symbol: action for action, symbol in _WIRE_SYMBOL.items()}


def action_symbol(action: ControlAction) -> str:
    """The action's symbol in the control_command schema."""
    return _WIRE_SYMBOL.get(action, action.value)


def action_of_symbol(symbol: str | None) -> ControlAction:
    """The action a control_command enum symbol stands for."""
    if not symbol:
        return ControlAction.UNKNOWN
    return _ACTION_OF_SYMBOL.get(symbol) or ControlAction(symbol)


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
            "command_id": self.command_id,
            "action": action_symbol(self.action),
            "topic": self.topic,
            "tenant": self.tenant,
            "partitions": list(self.partitions),
            "mode": self.mode.value if self.mode else None,
            "reason": self.reason,
            "issued_by": self.issued_by,
            "issued_at": self.issued_at_ms,
        }

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> ControlCommand:
        return cls(
            action=action_of_symbol(r.get("action")),
            topic=r["topic"],
            tenant=r["tenant"],
            issued_at_ms=int(r["issued_at"]),
            partitions=tuple(r.get("partitions") or ()),
            mode=RouteMode(r["mode"]) if r.get("mode") else None,
            reason=r.get("reason", ""),
            issued_by=r.get("issued_by", ""),
            command_id=r["command_id"],
        )
