"""The stop-and-wait rules (routing_app.control.drain): pure, no Kafka."""

from __future__ import annotations

import pytest

from routing_app.control.decide import Decision
from routing_app.control.drain import (
    Drain,
    DrainAck,
    OnTimeout,
    Phase,
    finish,
    needs_drain,
    progress,
    start,
)
from routing_app.routes.events import ReassignmentEvent
from routing_app.routes.model import Route, RouteMode, RouteStatus


def _route(partitions: tuple[int, ...], epoch: int, mode: RouteMode = RouteMode.STRICT) -> Route:
    return Route("orders", "acme", partitions, epoch, mode=mode)


def _move(before: Route | None, after: Route | None, epoch: int) -> Decision:
    event = ReassignmentEvent.for_change(before, after, action="isolate", reason="hot",
                                         decided_at_ms=1000, worker_id="w")
    if after is None:
        from dataclasses import replace
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
    draining, drain = start(_move(current, _route((5, 6), 5), 5), current, 9, now_ms=1000,
                            timeout_ms=30_000, live_producers={"p1", "p2"})
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
    draining, drain = start(_move(current, None, 5), current, 7, now_ms=0, timeout_ms=1000,
                            live_producers=set())
    assert draining.route is not None and draining.route.partitions == (7,)
    assert drain.then_tombstone
    done = finish(drain, draining.route, Phase.DONE, OnTimeout.ABORT, now_ms=500, worker_id="w")
    assert done.tombstone and done.event.action == "drain-complete"
    assert done.event.to_epoch == 5 and done.event.to_partitions == ()
    assert done.event.observed["pause_ms"] == 500


def _drain(**changes: object) -> Drain:
    base = dict(topic="orders", tenant="acme", epoch=5, from_partitions=(3,),
                to_partitions=(5,), then_tombstone=False, started_ms=0, deadline_ms=10_000,
                expected=frozenset({"p1", "p2"}), action="isolate")
    base.update(changes)
    return Drain(**base)  # type: ignore[arg-type]


def _ack(pid: str, offset: int) -> DrainAck:
    return DrainAck(pid, "orders", "acme", 5, {3: offset}, acked_at_ms=1)


def test_waits_for_every_live_producer_then_for_the_groups_to_pass_their_offsets() -> None:
    drain = _drain()
    live = {"p1", "p2"}
    assert progress(drain, 1000, live, ack_grace_ms=500).waiting_for == ("p1", "p2")
    drain = drain.with_ack(_ack("p1", 41))
    step = progress(drain, 1000, live, ack_grace_ms=500)
    assert step.phase is Phase.PRODUCERS and step.waiting_for == ("p2",)
    drain = drain.with_ack(_ack("p2", 99))
    assert progress(drain, 1000, live, ack_grace_ms=500).phase is Phase.DONE  # no groups
    behind = progress(drain, 1000, live, ack_grace_ms=500, committed={3: 99})
    assert behind.phase is Phase.CONSUMERS and behind.targets == {3: 100}
    assert progress(drain, 1000, live, ack_grace_ms=500, committed={3: 100}).phase is Phase.DONE


def test_unknown_producers_get_the_grace_period_to_answer() -> None:
    drain = _drain(expected=frozenset())
    assert progress(drain, 100, set(), ack_grace_ms=500).phase is Phase.PRODUCERS
    assert progress(drain, 600, set(), ack_grace_ms=500).phase is Phase.DONE


def test_a_producer_gone_silent_is_covered_by_the_end_offsets() -> None:
    drain = _drain().with_ack(_ack("p1", 10))
    step = progress(drain, 1000, {"p1"}, ack_grace_ms=0, committed={3: 11})
    assert step.phase is Phase.CONSUMERS and step.needs_end_offsets
    step = progress(drain, 1000, {"p1"}, ack_grace_ms=0, committed={3: 11}, end_offsets={3: 50})
    assert step.phase is Phase.CONSUMERS and step.targets == {3: 50}
    assert progress(drain, 1000, {"p1"}, ack_grace_ms=0, committed={3: 50},
                    end_offsets={3: 50}).phase is Phase.DONE


@pytest.mark.parametrize("policy", [OnTimeout.ABORT, OnTimeout.FORCE])
def test_a_drain_out_of_time_is_aborted_or_forced_by_policy(policy: OnTimeout) -> None:
    current = _route((3,), 4)
    draining, drain = start(_move(current, _route((5,), 5), 5), current, 9, now_ms=0,
                            timeout_ms=1000, live_producers={"p1"})
    step = progress(drain, 1000, {"p1"}, ack_grace_ms=0)
    assert step.phase is Phase.TIMED_OUT
    assert draining.route is not None
    end = finish(drain, draining.route, step.phase, policy, now_ms=1000, worker_id="w",
                 waiting_for=("p1",))
    assert end.route is not None and end.route.status is RouteStatus.ACTIVE
    assert end.route.epoch == 5
    if policy is OnTimeout.ABORT:
        assert end.event.action == "drain-abort" and end.route.partitions == (3,)
    else:
        assert end.event.action == "drain-forced" and end.route.partitions == (5,)
    assert "p1" in end.event.reason


def test_aborting_a_move_off_default_hashing_goes_back_to_it() -> None:
    draining, drain = start(_move(None, _route((5,), 1), 1), None, 2, now_ms=0, timeout_ms=10,
                            live_producers={"p1"})
    assert draining.route is not None
    end = finish(drain, draining.route, Phase.TIMED_OUT, OnTimeout.ABORT, now_ms=10,
                 worker_id="w")
    assert end.tombstone and end.event.action == "drain-abort"


def test_drain_ack_round_trips() -> None:
    ack = DrainAck("p1", "orders", "acme", 5, {3: 41, 4: -1}, acked_at_ms=7, held=12)
    assert DrainAck.from_record(ack.to_record()) == ack
