"""How an operator command changes a route. Pure: the worker does the I/O around it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from routing_app.control.commands import ControlAction, ControlCommand
from routing_app.control.decision import OPERATOR, Decision, rejected
from routing_app.control.hash_base import hash_base_command
from routing_app.planner import PlannedChange
from routing_app.routes.events import ReassignmentEvent
from routing_app.routes.model import (
    Route,
    RouteError,
    RouteMode,
    RouteStatus,
    validate_topic_name,
)

PINNED = "pinned"


def apply_command(
    command: ControlCommand,
    current: Route | None,
    last_epoch: int,
    partition_count: int | None,
    *,
    worker_id: str,
    now_ms: int,
) -> Decision:
    """The decision for one command. ``last_epoch`` is the highest epoch ever written for the key
    (it survives tombstones, so a re-pinned tenant's epoch still grows)."""
    try:
        validate_topic_name(command.topic)
    except RouteError as exc:
        return rejected(command, str(exc), worker_id, now_ms)
    if partition_count is None:
        return rejected(command, f"data topic {command.topic!r} does not exist", worker_id, now_ms)
    by_topic = _TOPIC_COMMANDS.get(command.action)
    if by_topic is not None:
        return by_topic(command, current, last_epoch, partition_count, worker_id, now_ms)
    if not command.tenant:
        return rejected(command, "empty tenant id", worker_id, now_ms)
    if command.action in (ControlAction.FREEZE, ControlAction.UNFREEZE):
        verb = command.action.value
        return Decision(
            ReassignmentEvent(
                topic=command.topic,
                tenant=command.tenant,
                action=verb,
                reason=f"operator {verb}" + (f" ({command.reason})" if command.reason else ""),
                decided_at_ms=now_ms,
                worker_id=worker_id,
                from_partitions=current.partitions if current else (),
                to_partitions=current.partitions if current else (),
                from_epoch=current.epoch if current else None,
                to_epoch=current.epoch if current else None,
                command_id=command.command_id,
                reason_kind=OPERATOR,
            )
        )
    epoch = max(last_epoch, current.epoch if current else 0) + 1
    note = f" ({command.reason})" if command.reason else ""
    by = f"operator:{command.issued_by}" if command.issued_by else "operator"

    if command.action is ControlAction.PIN:
        route = Route(
            topic=command.topic,
            tenant=command.tenant,
            partitions=tuple(command.partitions),
            epoch=epoch,
            mode=command.mode or (current.mode if current else RouteMode.STRICT),
            status=RouteStatus.ACTIVE,
            reason=f"operator pin{note}",
            updated_at_ms=now_ms,
            decided_by=by,
            attributes={**(current.attributes if current else {}), PINNED: "true"},
        )
        try:
            route.validate(partition_count)
        except RouteError as exc:
            return rejected(command, str(exc), worker_id, now_ms)
        if current is not None and (current.partitions, current.mode) == (route.partitions, route.mode):
            return rejected(command, f"already on {list(route.partitions)} ({route.mode})", worker_id, now_ms)
        event = ReassignmentEvent.for_change(
            current,
            route,
            action="pin",
            reason=route.reason,
            decided_at_ms=now_ms,
            worker_id=worker_id,
            command_id=command.command_id,
            reason_kind=OPERATOR,
        )
        return Decision(event, route=route)

    if command.action is ControlAction.UNPIN:
        if current is None:
            return rejected(command, "tenant has no route (already on default hashing)", worker_id, now_ms)
        event = ReassignmentEvent.for_change(
            current,
            None,
            action="unpin",
            reason=f"operator unpin{note}",
            decided_at_ms=now_ms,
            worker_id=worker_id,
            command_id=command.command_id,
            reason_kind=OPERATOR,
        )
        # The tombstone uses up an epoch too, so history stays totally ordered per key.
        return Decision(replace(event, to_epoch=epoch), tombstone=True)

    return rejected(
        command, f"action {command.action.value!r} is not supported by this writer", worker_id, now_ms
    )


def _evacuate(
    command: ControlCommand,
    current: Route | None,
    last_epoch: int,
    partition_count: int,
    worker_id: str,
    now_ms: int,
) -> Decision:
    """Move every tenant off the given partitions (none: stop evacuating)."""
    bad = [p for p in command.partitions if not 0 <= p < partition_count]
    if bad:
        return rejected(
            command,
            f"partition {bad[0]} does not exist on {command.topic!r} (valid: 0..{partition_count - 1})",
            worker_id,
            now_ms,
        )
    what = (
        f"evacuate partitions {sorted(set(command.partitions))}" if command.partitions else "stop evacuating"
    )
    return Decision(
        ReassignmentEvent(
            topic=command.topic,
            tenant=command.tenant,
            action=ControlAction.EVACUATE.value,
            reason=f"operator {what}" + (f" ({command.reason})" if command.reason else ""),
            decided_at_ms=now_ms,
            worker_id=worker_id,
            to_partitions=tuple(sorted(set(command.partitions))),
            command_id=command.command_id,
            reason_kind=OPERATOR,
        )
    )


_TopicCommand = Callable[[ControlCommand, Route | None, int, int, str, int], Decision]
# Commands about a whole data topic rather than one tenant.
_TOPIC_COMMANDS: dict[ControlAction, _TopicCommand] = {
    ControlAction.EVACUATE: _evacuate,
    ControlAction.EXPAND: hash_base_command,
    ControlAction.REBASE: hash_base_command,
}


def decide_planned(
    change: PlannedChange,
    current: Route | None,
    last_epoch: int,
    *,
    worker_id: str,
    now_ms: int,
) -> Decision | None:
    """The decision for one planner change; None when it would change nothing."""
    epoch = max(last_epoch, current.epoch if current else 0) + 1
    if change.partitions is None:
        if current is None:
            return None
        event = ReassignmentEvent.for_change(
            current,
            None,
            action=change.action.value,
            reason=change.reason,
            decided_at_ms=now_ms,
            worker_id=worker_id,
            observed=change.observed,
            reason_kind=change.kind.value,
        )
        return Decision(replace(event, to_epoch=epoch), tombstone=True)
    if current is not None and current.partitions == tuple(change.partitions):
        return None
    route = Route(
        topic=change.topic,
        tenant=change.tenant,
        partitions=tuple(change.partitions),
        epoch=epoch,
        mode=current.mode if current else RouteMode.STRICT,
        status=RouteStatus.ACTIVE,
        reason=change.reason,
        updated_at_ms=now_ms,
        decided_by=f"planner:{worker_id}",
        attributes={k: v for k, v in (current.attributes if current else {}).items() if k != PINNED},
    )
    event = ReassignmentEvent.for_change(
        current,
        route,
        action=change.action.value,
        reason=change.reason,
        decided_at_ms=now_ms,
        worker_id=worker_id,
        observed=change.observed,
        reason_kind=change.kind.value,
    )
    return Decision(event, route=route)
