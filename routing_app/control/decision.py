"""What the route writer writes for a decision, and its answer to a command it refuses."""

from __future__ import annotations

from dataclasses import dataclass

from routing_app.control.commands import ControlCommand
from routing_app.routes.events import ReassignmentEvent, WriterReasonKind
from routing_app.routes.model import Route

OPERATOR = WriterReasonKind.OPERATOR.value


@dataclass(frozen=True)
class Decision:
    """What to write: ``route`` (None with ``tombstone`` = remove) and the event that explains it."""

    # epoch: the event's to_epoch is the epoch the change consumed (a tombstone consumes one too).

    event: ReassignmentEvent
    route: Route | None = None
    tombstone: bool = False

    @property
    def changes_route(self) -> bool:
        return self.route is not None or self.tombstone


def rejected(command: ControlCommand, reason: str, worker_id: str, now_ms: int) -> Decision:
    return Decision(
        ReassignmentEvent(
            topic=command.topic,
            tenant=command.tenant,
            action="rejected",
            reason=f"{command.action.value} rejected: {reason}",
            decided_at_ms=now_ms,
            worker_id=worker_id,
            to_partitions=command.partitions,
            command_id=command.command_id,
            reason_kind=WriterReasonKind.REJECTED.value,
        )
    )
