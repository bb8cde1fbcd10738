"""apply_command: the route writer's decision for one operator command."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing_app.control.commands import ControlAction, ControlCommand
from routing_app.control.decide import PINNED, apply_command, decide_planned
from routing_app.control.decision import Decision
from routing_app.planner import Action, PlannedChange, ReasonKind
from routing_app.routes.model import Route, RouteMode, RouteStatus

FAST = settings(max_examples=200, deadline=None, database=None)
NOW = 1_700_000_000_000
COUNT = 8


def _cmd(action: ControlAction = ControlAction.PIN, **changes: Any) -> ControlCommand:
    base: dict[str, object] = {
        "action": action,
        "topic": "orders",
        "tenant": "acme",
        "issued_at_ms": NOW - 5,
        "partitions": (3,),
        "command_id": "cmd-1",
    }
    base.update(changes)
    return ControlCommand(**base)  # type: ignore[arg-type]


def _apply(
    command: ControlCommand, current: Route | None = None, last_epoch: int = 0, count: int | None = COUNT
) -> Decision:
    return apply_command(command, current, last_epoch, count, worker_id="w-1", now_ms=NOW)


def _current(**changes: object) -> Route:
    base: dict[str, object] = {
        "topic": "orders",
        "tenant": "acme",
        "partitions": (1,),
        "epoch": 4,
        "mode": RouteMode.RELAXED,
        "attributes": {"owner": "team-a"},
    }
    base.update(changes)
    return Route(**base)  # type: ignore[arg-type]


def _assert_rejected(decision: Decision, *fragments: str) -> None:
    assert not decision.changes_route
    assert decision.route is None and not decision.tombstone
    event = decision.event
    assert event.action == "rejected" and not event.applied
    assert event.command_id == "cmd-1" and event.worker_id == "w-1"
    assert event.decided_at_ms == NOW
    assert event.to_epoch is None
    assert event.reason_kind == "rejected"
    for fragment in fragments:
        assert fragment in event.reason, event.reason


# -- pin ---------------------------------------------------------------------------------------


def test_pin_creates_active_route() -> None:
    decision = _apply(_cmd(partitions=(3, 5), reason="hot", issued_by="alice"), last_epoch=6)
    route = decision.route
    assert route is not None and decision.changes_route and not decision.tombstone
    assert route.partitions == (3, 5)
    assert route.epoch == 7
    assert route.status is RouteStatus.ACTIVE
    assert route.mode is RouteMode.STRICT
    assert route.attributes == {PINNED: "true"}
    assert route.updated_at_ms == NOW
    assert route.decided_by == "operator:alice"
    assert route.reason == "operator pin (hot)"
    route.validate(COUNT)
    event = decision.event
    assert event.action == "pin" and event.applied
    assert (event.from_epoch, event.to_epoch) == (None, 7)
    assert (event.from_partitions, event.to_partitions) == ((), (3, 5))
    assert event.command_id == "cmd-1" and event.topic == "orders" and event.tenant == "acme"


@pytest.mark.parametrize(
    ("last_epoch", "current_epoch", "expected"),
    [
        (0, 4, 5),
        (10, 4, 11),
        (4, 4, 5),
        (3, 9, 10),
    ],
)
def test_pin_epoch_is_max_plus_one(last_epoch: int, current_epoch: int, expected: int) -> None:
    decision = _apply(_cmd(partitions=(6,)), _current(epoch=current_epoch), last_epoch)
    assert decision.route is not None and decision.route.epoch == expected
    assert decision.event.from_epoch == current_epoch
    assert decision.event.to_epoch == expected


def test_pin_inherits_mode_and_attributes_from_current() -> None:
    decision = _apply(_cmd(partitions=(6,)), _current())
    route = decision.route
    assert route is not None
    assert route.mode is RouteMode.RELAXED
    assert route.attributes == {"owner": "team-a", PINNED: "true"}
    assert route.decided_by == "operator"
    assert decision.event.from_partitions == (1,)


def test_pin_explicit_mode_wins() -> None:
    decision = _apply(_cmd(partitions=(1,), mode=RouteMode.STRICT), _current())
    assert decision.route is not None and decision.route.mode is RouteMode.STRICT
    assert decision.event.mode == "strict"


@pytest.mark.parametrize(
    ("changes", "count", "fragment"),
    [
        ({"partitions": (8,)}, COUNT, "partition 8 does not exist"),
        ({"partitions": (0, 99)}, COUNT, "partition 99 does not exist"),
        ({"partitions": (-1,)}, COUNT, "partition -1 does not exist"),
        ({"partitions": ()}, COUNT, "names no partitions"),
        ({"partitions": (2, 2)}, COUNT, "names a partition twice"),
        ({}, None, "data topic 'orders' does not exist"),
        ({"topic": "bad/topic"}, COUNT, "is not a Kafka topic name"),
        ({"topic": ""}, COUNT, "is not a Kafka topic name"),
        ({"tenant": ""}, COUNT, "empty tenant id"),
    ],
)
def test_pin_rejections(changes: dict[str, Any], count: int | None, fragment: str) -> None:
    decision = _apply(_cmd(**changes), _current(), last_epoch=4, count=count)
    _assert_rejected(decision, "pin rejected:", fragment)


def test_pin_identical_to_current_is_rejected() -> None:
    current = _current(partitions=(1, 2), mode=RouteMode.STRICT)
    decision = _apply(_cmd(partitions=(1, 2)), current, last_epoch=4)
    _assert_rejected(decision, "already on [1, 2]")
    # Same partitions but another mode is a real change.
    changed = _apply(_cmd(partitions=(1, 2), mode=RouteMode.RELAXED), current, last_epoch=4)
    assert changed.route is not None and changed.route.mode is RouteMode.RELAXED


def test_rejected_event_keeps_command_partitions() -> None:
    decision = _apply(_cmd(partitions=(42,)))
    assert decision.event.to_partitions == (42,)


# -- unpin -------------------------------------------------------------------------------------


def test_unpin_routed_tenant_is_tombstone_with_next_epoch() -> None:
    decision = _apply(_cmd(ControlAction.UNPIN, partitions=(), reason="done"), _current(), last_epoch=9)
    assert decision.tombstone and decision.route is None and decision.changes_route
    event = decision.event
    assert event.action == "unpin" and event.applied
    assert (event.from_epoch, event.to_epoch) == (4, 10)
    assert event.from_partitions == (1,) and event.to_partitions == ()
    assert event.reason == "operator unpin (done)"


def test_unpin_unrouted_tenant_is_rejected() -> None:
    _assert_rejected(_apply(_cmd(ControlAction.UNPIN), None, last_epoch=3), "has no route")


def test_unknown_actions_are_rejected() -> None:
    decision = _apply(_cmd(ControlAction.UNKNOWN), _current(), last_epoch=4)
    _assert_rejected(decision, "unknown rejected", "not supported")


@pytest.mark.parametrize("action", [ControlAction.FREEZE, ControlAction.UNFREEZE])
def test_freeze_and_unfreeze_record_an_event_without_touching_the_route(action: ControlAction) -> None:
    decision = _apply(_cmd(action, reason="audit"), _current(), last_epoch=4)
    assert not decision.changes_route
    assert decision.event.applied and decision.event.action == action.value
    assert decision.event.reason == f"operator {action.value} (audit)"
    assert decision.event.to_epoch == 4 and decision.event.to_partitions == (1,)


def test_evacuate_validates_partitions_and_empty_list_stops_evacuating() -> None:
    evacuated = _apply(_cmd(ControlAction.EVACUATE, tenant="", partitions=(5, 2, 5)))
    assert evacuated.event.applied and evacuated.event.to_partitions == (2, 5)
    assert evacuated.event.action == "evacuate" and evacuated.event.reason_kind == "operator"
    assert evacuated.event.reason == "operator evacuate partitions [2, 5]"
    assert not evacuated.changes_route
    stop = _apply(_cmd(ControlAction.EVACUATE, tenant="", partitions=()))
    assert stop.event.applied and stop.event.reason == "operator stop evacuating"
    _assert_rejected(_apply(_cmd(ControlAction.EVACUATE, partitions=(COUNT,))), "does not exist")
    _assert_rejected(_apply(_cmd(ControlAction.EVACUATE), count=None), "does not exist")


# -- reason kinds: set where the decision is made --------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        _cmd(ControlAction.PIN, partitions=(5,)),
        _cmd(ControlAction.UNPIN),
        _cmd(ControlAction.FREEZE),
        _cmd(ControlAction.UNFREEZE),
        _cmd(ControlAction.EVACUATE, tenant="", partitions=(2,)),
    ],
    ids=lambda c: c.action.value,
)
def test_an_applied_command_is_an_operator_decision(command: ControlCommand) -> None:
    event = _apply(command, _current()).event
    assert event.applied and event.reason_kind == "operator"


@pytest.mark.parametrize("kind", list(ReasonKind), ids=str)
def test_a_planned_change_carries_its_kind_on_the_event(kind: ReasonKind) -> None:
    # Words that name no kind: the event's label must come from the change's kind.
    partitions = None if kind.action is Action.MERGE else (6,)
    change = PlannedChange("orders", "acme", kind.action, partitions, "new words", kind=kind)
    decision = decide_planned(change, _current(), 4, worker_id="w-1", now_ms=NOW)
    assert decision is not None
    assert decision.event.reason_kind == kind.value
    assert decision.event.action == kind.action.value


# -- property: epochs strictly increase, routes always valid -----------------------------------

commands = st.builds(
    ControlCommand,
    action=st.sampled_from([ControlAction.PIN, ControlAction.UNPIN]),
    topic=st.just("orders"),
    tenant=st.just("acme"),
    issued_at_ms=st.just(NOW),
    partitions=st.lists(st.integers(-1, COUNT), max_size=4).map(tuple),
    mode=st.sampled_from([None, RouteMode.STRICT, RouteMode.RELAXED]),
)


@given(steps=st.lists(commands, max_size=30), start_epoch=st.integers(0, 1000))
@FAST
def test_epochs_strictly_increase_and_routes_validate(steps: list[ControlCommand], start_epoch: int) -> None:
    current: Route | None = None
    last_epoch = start_epoch
    applied: list[int] = []
    for command in steps:
        decision = apply_command(command, current, last_epoch, COUNT, worker_id="w", now_ms=NOW)
        if not decision.event.applied:
            assert not decision.changes_route
            continue
        to_epoch = decision.event.to_epoch
        assert to_epoch is not None
        assert decision.event.from_epoch == (current.epoch if current else None)
        applied.append(to_epoch)
        if decision.tombstone:
            assert decision.route is None
            current = None
        else:
            assert decision.route is not None
            assert decision.route.validate(COUNT).epoch == to_epoch
            current = decision.route
        last_epoch = max(last_epoch, to_epoch)
    assert all(a < b for a, b in pairwise(applied))
    assert all(epoch > start_epoch for epoch in applied)
