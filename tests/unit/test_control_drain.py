"""The stop-and-wait rules (routing_app.control.drain): pure, no Kafka."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from routing_app.config import Settings
from routing_app.control.decision import Decision
from routing_app.control.drain import (
    Drain,
    DrainAck,
    OnTimeout,
    Phase,
    Progress,
    describe_wait,
    finish,
    hello_joins,
    needs_drain,
    progress,
    start,
)
from routing_app.routes.events import ReassignmentEvent
from routing_app.routes.model import Route, RouteMode, RouteStatus


def _route(partitions: tuple[int, ...], epoch: int, mode: RouteMode = RouteMode.STRICT) -> Route:
    return Route("orders", "acme", partitions, epoch, mode=mode)


def _move(before: Route | None, after: Route | None, epoch: int) -> Decision:
    event = ReassignmentEvent.for_change(
        before, after, action="isolate", reason="hot", decided_at_ms=1000, worker_id="w"
    )
    if after is None:
        return Decision(replace(event, to_epoch=epoch), tombstone=True)
    return Decision(event, route=after)


def test_only_strict_moves_that_change_partitions_drain() -> None:
    assert needs_drain(_move(None, _route((3,), 1), 1), None)
    assert needs_drain(_move(_route((3,), 1), None, 2), _route((3,), 1))
    assert not needs_drain(_move(None, _route((3,), 1, RouteMode.RELAXED), 1), None)
    same = _route((3,), 1)
    assert not needs_drain(_move(same, _route((3,), 2), 2), same)


def test_start_writes_draining_with_the_moves_epoch_and_remembers_where_from() -> None:
    current = _route((3,), 4)
    draining, drain = start(
        _move(current, _route((5, 6), 5), 5),
        current,
        9,
        now_ms=1000,
        timeout_ms=30_000,
        live_producers={"p1", "p2"},
    )
    assert draining.route is not None
    assert draining.route.status is RouteStatus.DRAINING
    assert draining.route.epoch == 5
    assert draining.route.partitions == (5, 6)
    assert draining.route.previous_partitions == (3,)
    assert draining.event.status == "draining"
    assert (drain.from_partitions, drain.to_partitions, drain.then_tombstone) == ((3,), (5, 6), False)
    assert drain.expected == {"p1", "p2"}
    assert Drain.from_record(drain.to_record()) == drain


def test_a_merge_back_drains_to_the_hashed_partition_then_tombstones() -> None:
    current = _route((3,), 4)
    draining, drain = start(
        _move(current, None, 5), current, 7, now_ms=0, timeout_ms=1000, live_producers=set()
    )
    assert draining.route is not None and draining.route.partitions == (7,)
    assert drain.then_tombstone
    done = finish(drain, draining.route, Phase.DONE, OnTimeout.ABORT, now_ms=500, worker_id="w")
    assert done.tombstone and done.event.action == "drain-complete"
    assert done.event.to_epoch == 5 and done.event.to_partitions == ()
    assert done.event.observed["pause_ms"] == 500


def _drain(**changes: object) -> Drain:
    base = dict(
        topic="orders",
        tenant="acme",
        epoch=5,
        from_partitions=(3,),
        to_partitions=(5,),
        then_tombstone=False,
        started_ms=0,
        deadline_ms=10_000,
        expected=frozenset({"p1", "p2"}),
        action="isolate",
    )
    base.update(changes)
    return Drain(**base)  # type: ignore[arg-type]


def _ack(pid: str, offset: int) -> DrainAck:
    return DrainAck(pid, "orders", "acme", 5, {3: offset}, acked_at_ms=1)


def _at(drain: Drain, now_ms: int, live: set[str], **options: Any) -> Progress:
    """progress() once the roll call is over and without a grace period, unless told."""
    return progress(drain, now_ms, live, **{"roll_call_done": True, "ack_grace_ms": 0, **options})


def test_waits_for_every_live_producer_then_for_the_groups_to_pass_their_offsets() -> None:
    drain = _drain()
    live = {"p1", "p2"}
    assert _at(drain, 1000, live).waiting_for == ("p1", "p2")
    drain = drain.with_ack(_ack("p1", 41))
    step = _at(drain, 1000, live)
    assert step.phase is Phase.PRODUCERS and step.waiting_for == ("p2",)
    drain = drain.with_ack(_ack("p2", 99))
    assert _at(drain, 1000, live).phase is Phase.DONE  # no groups
    behind = _at(drain, 1000, live, committed={3: 99})
    assert behind.phase is Phase.CONSUMERS and behind.targets == {3: 100}
    assert _at(drain, 1000, live, committed={3: 100}).phase is Phase.DONE


def test_the_last_answer_ends_the_producers_phase_without_a_grace_period() -> None:
    drain = _drain(started_ms=1000).with_ack(_ack("p1", 41)).with_ack(_ack("p2", 7))
    # 1 ms after the start: nothing else to wait for (the default drain_ack_grace_ms is 0).
    assert Settings().drain_ack_grace_ms == 0
    assert _at(drain, 1001, {"p1", "p2"}).phase is Phase.DONE


def test_producers_of_versions_without_hellos_get_the_grace_period_to_answer() -> None:
    drain = _drain(expected=frozenset())
    assert _at(drain, 100, set(), ack_grace_ms=500).phase is Phase.PRODUCERS
    assert _at(drain, 600, set(), ack_grace_ms=500).phase is Phase.DONE


def test_nothing_ends_before_the_roll_call_however_many_answered() -> None:
    drain = _drain().with_ack(_ack("p1", 41)).with_ack(_ack("p2", 7))
    step = _at(drain, 1000, {"p1", "p2"}, roll_call_done=False)
    assert step.phase is Phase.PRODUCERS and step.roll_call_open and not step.waiting_for
    late = _at(drain, drain.deadline_ms, {"p1", "p2"}, roll_call_done=False)
    assert late.phase is Phase.TIMED_OUT and late.stuck_in is Phase.PRODUCERS
    assert "hellos" in describe_wait(drain, late, ())[0]
    assert _at(drain, 1000, {"p1", "p2"}).phase is Phase.DONE


def test_a_hello_before_the_drains_end_offset_joins_it_one_from_it_on_does_not() -> None:
    assert hello_joins(None, 10_000)  # the end is not known yet: it can only be higher
    assert hello_joins(42, 41)
    assert not hello_joins(42, 42)
    assert not hello_joins(42, 43)
    drain = _drain().with_expected("p3")
    assert _at(drain, 1000, {"p1", "p2", "p3"}).waiting_for == ("p1", "p2", "p3")
    assert Drain.from_record(drain.to_record()) == drain


def test_a_producer_gone_silent_is_covered_by_the_end_offsets() -> None:
    drain = _drain().with_ack(_ack("p1", 10))
    step = _at(drain, 1000, {"p1"}, committed={3: 11})
    assert step.phase is Phase.CONSUMERS and step.needs_end_offsets
    step = _at(drain, 1000, {"p1"}, committed={3: 11}, end_offsets={3: 50})
    assert step.phase is Phase.CONSUMERS and step.targets == {3: 50}
    assert _at(drain, 1000, {"p1"}, committed={3: 50}, end_offsets={3: 50}).phase is Phase.DONE


@pytest.mark.parametrize("policy", [OnTimeout.ABORT, OnTimeout.FORCE])
def test_a_drain_out_of_time_is_aborted_or_forced_by_policy(policy: OnTimeout) -> None:
    current = _route((3,), 4)
    draining, drain = start(
        _move(current, _route((5,), 5), 5), current, 9, now_ms=0, timeout_ms=1000, live_producers={"p1"}
    )
    step = _at(drain, 1000, {"p1"})
    assert step.phase is Phase.TIMED_OUT
    assert draining.route is not None
    end = finish(drain, draining.route, step.phase, policy, now_ms=1000, worker_id="w", waiting_for=("p1",))
    assert end.route is not None and end.route.status is RouteStatus.ACTIVE
    assert end.route.epoch == 5
    if policy is OnTimeout.ABORT:
        assert end.event.action == "drain-abort" and end.route.partitions == (3,)
    else:
        assert end.event.action == "drain-forced" and end.route.partitions == (5,)
    assert "p1" in end.event.reason


def test_aborting_a_move_off_default_hashing_goes_back_to_it() -> None:
    draining, drain = start(
        _move(None, _route((5,), 1), 1), None, 2, now_ms=0, timeout_ms=10, live_producers={"p1"}
    )
    assert draining.route is not None
    end = finish(drain, draining.route, Phase.TIMED_OUT, OnTimeout.ABORT, now_ms=10, worker_id="w")
    assert end.tombstone and end.event.action == "drain-abort"


@pytest.mark.parametrize(
    ("outcome", "policy", "action", "kind"),
    [
        (Phase.DONE, OnTimeout.ABORT, "drain-complete", "drained"),
        (Phase.TIMED_OUT, OnTimeout.FORCE, "drain-forced", "drain_timeout_forced"),
        (Phase.TIMED_OUT, OnTimeout.ABORT, "drain-abort", "drain_timeout_aborted"),
    ],
)
def test_the_move_keeps_its_kind_and_its_end_says_how_the_drain_ended(
    outcome: Phase, policy: OnTimeout, action: str, kind: str
) -> None:
    current = _route((3,), 4)
    move = _move(current, _route((5,), 5), 5)
    move = Decision(replace(move.event, reason_kind="hot_partition"), route=move.route)
    draining, drain = start(move, current, 9, now_ms=0, timeout_ms=1000, live_producers={"p1"})
    assert draining.event.reason_kind == "hot_partition"
    end = finish(drain, draining.route, outcome, policy, now_ms=1000, worker_id="w")
    assert (end.event.action, end.event.reason_kind) == (action, kind)


def test_drain_ack_round_trips() -> None:
    ack = DrainAck("p1", "orders", "acme", 5, {3: 41, 4: -1}, acked_at_ms=7, held=12)
    assert DrainAck.from_record(ack.to_record()) == ack
