"""How ``expand`` and ``rebase`` change a data topic's hash base (routing_app.control.expand
says why a base exists). Pure, like the rest of control.decide: the worker does the I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from routing_app.control.commands import ControlAction, ControlCommand
from routing_app.control.decision import OPERATOR, Decision, rejected
from routing_app.routes.events import ReassignmentEvent
from routing_app.routes.model import (
    HASH_BASE_TENANT,
    REBASE_ATTRIBUTE,
    REBASE_REQUESTED,
    Route,
    RouteStatus,
    hash_base_route,
)


def hash_base_command(
    command: ControlCommand,
    base: Route | None,
    last_epoch: int,
    partition_count: int,
    worker_id: str,
    now_ms: int,
) -> Decision:
    """``expand`` records the topic's hash base before it grows (a strict write: the producers'
    answers are its acknowledgement); ``rebase`` asks the planner to move the hashed tenants
    to their home by the partition count and then drop the base. ``base``: the topic's base
    route (tenant ""), if it has one."""
    why_not = _refusal(command, base)
    if why_not is not None:
        return rejected(command, why_not, worker_id, now_ms)
    epoch = max(last_epoch, base.epoch if base else 0) + 1
    note = f" ({command.reason})" if command.reason else ""
    by = f"operator:{command.issued_by}" if command.issued_by else "operator"
    if command.action is ControlAction.REBASE:
        assert base is not None  # refused above otherwise
        route = replace(
            base,
            epoch=epoch,
            reason=f"rebase requested: hashed tenants move to murmur2 % {partition_count}, then the "
            f"base {len(base.partitions)} is dropped{note}",
            updated_at_ms=now_ms,
            decided_by=by,
            attributes={**base.attributes, REBASE_ATTRIBUTE: REBASE_REQUESTED},
        )
        return _written(command, base, route, worker_id, now_ms)
    grow_to = command.partitions[0] if len(command.partitions) == 1 else 0
    if grow_to <= partition_count:
        return rejected(
            command,
            f"{command.topic!r} has {partition_count} partitions: expand needs a larger count, "
            f"not {list(command.partitions)}",
            worker_id,
            now_ms,
        )
    if base is not None:
        return _kept(command, base, grow_to, note, worker_id, now_ms)
    route = hash_base_route(
        command.topic,
        partition_count,
        epoch,
        reason=f"expand to {grow_to}: unrouted keys hash by {partition_count}, the count before "
        f"the growth{note}",
        now_ms=now_ms,
        decided_by=by,
    )
    observed = {"base": float(partition_count), "grow_to": float(grow_to)}
    return _written(command, None, route, worker_id, now_ms, observed)


def _refusal(command: ControlCommand, base: Route | None) -> str | None:
    if command.tenant != HASH_BASE_TENANT:
        return "expand and rebase name a topic, not a tenant"
    if base is not None and base.status is RouteStatus.DRAINING:
        return (
            f"the hash base of {command.topic!r} is being written (draining, epoch {base.epoch}): "
            "retry once the producers have answered"
        )
    rebasing = base is not None and base.attributes.get(REBASE_ATTRIBUTE) == REBASE_REQUESTED
    if command.action is ControlAction.REBASE:
        if base is None:
            return f"{command.topic!r} has no hash base (it was never expanded)"
        if rebasing:
            return f"{command.topic!r} is rebasing already"
    elif rebasing:
        return f"{command.topic!r} is rebasing: expand once it is done"
    return None


def _written(
    command: ControlCommand,
    before: Route | None,
    after: Route,
    worker_id: str,
    now_ms: int,
    observed: Mapping[str, float] | None = None,
) -> Decision:
    event = ReassignmentEvent.for_change(
        before,
        after,
        action=command.action.value,
        reason=after.reason,
        decided_at_ms=now_ms,
        worker_id=worker_id,
        command_id=command.command_id,
        reason_kind=OPERATOR,
        observed=observed,
    )
    return Decision(event, route=after)


def _kept(
    command: ControlCommand, base: Route, grow_to: int, note: str, worker_id: str, now_ms: int
) -> Decision:
    """Grown before: unrouted keys keep hashing by the first base, which every producer knows;
    the answer writes nothing (its epochs say so: from = to)."""
    return Decision(
        ReassignmentEvent(
            topic=command.topic,
            tenant=HASH_BASE_TENANT,
            action=ControlAction.EXPAND.value,
            reason=f"expand to {grow_to}: hash base {len(base.partitions)} kept (known to every "
            f"producer since epoch {base.epoch}){note}",
            decided_at_ms=now_ms,
            worker_id=worker_id,
            from_partitions=base.partitions,
            to_partitions=base.partitions,
            from_epoch=base.epoch,
            to_epoch=base.epoch,
            mode=base.mode.value,
            status=base.status.value,
            command_id=command.command_id,
            reason_kind=OPERATOR,
        )
    )
