"""What the route writer adds to the control rules (control.decide) for an operator's command:
who may issue one, when a tenant is too busy for one, and the operator state an applied command
leaves in the writer's tables (frozen tenants, evacuated partitions) for the planner to read.

Apart from the writer's core because these are the operators' rules, not the writing of routes.
"""

from __future__ import annotations

import logging

from routing_app.app.writer_tables import WriterTables
from routing_app.config import Settings
from routing_app.control import ControlAction, ControlCommand
from routing_app.routes import Route
from routing_app.routes.model import RouteStatus, route_key

log = logging.getLogger(__name__)


class OperatorCommands:
    def __init__(self, settings: Settings, tables: WriterTables, counters: dict[str, int]) -> None:
        self._settings = settings
        self._tables = tables
        self._counters = counters

    def unauthorized(self, command: ControlCommand, offset: int) -> str | None:
        """Why the command is refused for its issuer (counted and logged), or None."""
        operators = self._settings.operators()
        if not operators or command.issued_by in operators:
            return None
        # The control topic's ACL is what keeps others out; this catches an operator tool
        # of another principal, or anyone where the ACLs are missing.
        self._counters["commands_unauthorized"] += 1
        log.error(
            "control offset %d: %s command for %s/%s refused: issued_by %r is not one "
            "of operator_principals (%s)",
            offset,
            command.action.value,
            command.topic,
            command.tenant,
            command.issued_by,
            ", ".join(sorted(operators)),
        )
        return f"issued_by {command.issued_by!r} is not an operator principal"

    @staticmethod
    def busy(command: ControlCommand, current: Route | None) -> str | None:
        """Why the tenant cannot take the command now, or None."""
        if (
            current is not None
            and current.status is RouteStatus.DRAINING
            and command.action in (ControlAction.PIN, ControlAction.UNPIN)
        ):
            # One move at a time per tenant: the drain ends (done or aborted) within its limit.
            return (
                f"tenant is moving {list(current.previous_partitions)} -> "
                f"{list(current.partitions)} (draining, epoch {current.epoch}); retry once the "
                f"move ends"
            )
        return None

    def keep_state(self, command: ControlCommand) -> None:
        """Records what an applied freeze, unfreeze or evacuate leaves for the planner."""
        key = route_key(command.topic, command.tenant)
        if command.action is ControlAction.FREEZE:
            self._tables.frozen[key] = True
        elif command.action is ControlAction.UNFREEZE and key in self._tables.frozen:
            del self._tables.frozen[key]
        elif command.action is ControlAction.EVACUATE:
            if command.partitions:
                self._tables.evacuated[command.topic] = sorted(set(command.partitions))
            elif command.topic in self._tables.evacuated:
                del self._tables.evacuated[command.topic]
