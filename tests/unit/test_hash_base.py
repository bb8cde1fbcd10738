"""A topic's hash base (``routing-app topics expand``): the writer's rules for expand and
rebase, the base's strict write, and the producer's partition choice by the base."""

from __future__ import annotations

from typing import Any

from routing_app.client.partitioner import RoutingPath, java_partition
from routing_app.client.router import Router
from routing_app.control import drain as drains
from routing_app.control.commands import ControlAction, ControlCommand
from routing_app.control.decide import apply_command
from routing_app.routes.model import (
    HASH_BASE_TENANT,
    REBASE_ATTRIBUTE,
    REBASE_REQUESTED,
    Route,
    RouteStatus,
    hash_base_route,
    hash_modulus,
)

NOW = 1_700_000_000_000
TOPIC = "orders"


def _command(
    action: ControlAction, partitions: tuple[int, ...] = (), tenant: str = HASH_BASE_TENANT
) -> ControlCommand:
    return ControlCommand(action, TOPIC, tenant, NOW, partitions, command_id="c-1", issued_by="ops")


def _base(base: int = 12, **changes: Any) -> Route:
    route = hash_base_route(TOPIC, base, 3, reason="expand", now_ms=NOW - 1000, decided_by="operator")
    return Route(**{**{f: getattr(route, f) for f in route.__dataclass_fields__}, **changes})


def test_expand_records_the_count_as_the_base_in_a_strict_write_that_drains_nowhere() -> None:
    decision = apply_command(_command(ControlAction.EXPAND, (24,)), None, 0, 12, worker_id="w", now_ms=NOW)
    assert decision.route is not None and decision.route.partitions == tuple(range(12))
    assert decision.route.tenant == HASH_BASE_TENANT and decision.route.epoch == 1
    assert decision.event.action == "expand" and decision.event.observed["grow_to"] == 24
    assert drains.needs_drain(decision, None)
    draining, drain = drains.start(decision, None, None, now_ms=NOW, timeout_ms=30_000, live_producers={"p1"})
    # No partition is left, so no consumer is waited for: only the producers' answers.
    assert drain.from_partitions == () and draining.route is not None
    assert draining.route.status is RouteStatus.DRAINING and draining.route.previous_partitions == ()
    assert drains.progress(drain, NOW + 10, {"p1"}, ack_grace_ms=0).phase is drains.Phase.PRODUCERS
    # Out of time: back to no base (a tombstone), never forward.
    aborted = drains.finish(
        drain,
        draining.route,
        drains.Phase.TIMED_OUT,
        drains.OnTimeout.ABORT,
        now_ms=NOW + 31_000,
        worker_id="w",
        waiting_for=("producer p1 (no drain ack)",),
    )
    assert aborted.tombstone and aborted.event.action == "drain-abort" and "p1" in aborted.event.reason


def test_expand_is_refused_for_a_tenant_a_smaller_count_or_a_base_being_written() -> None:
    def reason(command: ControlCommand, base: Route | None = None) -> str:
        decision = apply_command(command, base, 0, 12, worker_id="w", now_ms=NOW)
        assert not decision.event.applied
        return decision.event.reason

    assert "name a topic, not a tenant" in reason(_command(ControlAction.EXPAND, (24,), tenant="acme"))
    assert "expand needs a larger count" in reason(_command(ControlAction.EXPAND, (12,)))
    assert "expand needs a larger count" in reason(_command(ControlAction.EXPAND, ()))
    draining = _base(status=RouteStatus.DRAINING)
    assert "being written" in reason(_command(ControlAction.EXPAND, (24,)), draining)
    rebasing = _base(attributes={REBASE_ATTRIBUTE: REBASE_REQUESTED})
    assert "is rebasing" in reason(_command(ControlAction.EXPAND, (48,)), rebasing)


def test_a_second_expansion_keeps_the_first_base() -> None:
    decision = apply_command(
        _command(ControlAction.EXPAND, (48,)), _base(12), 3, 24, worker_id="w", now_ms=NOW
    )
    assert decision.event.applied and not decision.changes_route
    assert decision.event.to_partitions == tuple(range(12)) and decision.event.status == "active"


def test_rebase_marks_the_base_and_moves_nothing_itself() -> None:
    refused = apply_command(_command(ControlAction.REBASE), None, 0, 24, worker_id="w", now_ms=NOW)
    assert not refused.event.applied and "never expanded" in refused.event.reason
    decision = apply_command(_command(ControlAction.REBASE), _base(12), 3, 24, worker_id="w", now_ms=NOW)
    assert decision.route is not None and decision.route.attributes[REBASE_ATTRIBUTE] == REBASE_REQUESTED
    assert decision.route.epoch == 4 and decision.route.partitions == tuple(range(12))
    assert decision.event.action == "rebase" and not drains.needs_drain(decision, _base(12))
    again = apply_command(_command(ControlAction.REBASE), decision.route, 4, 24, worker_id="w", now_ms=NOW)
    assert not again.event.applied and "rebasing already" in again.event.reason


class _Counts:
    def __init__(self, count: int) -> None:
        self.counts = {TOPIC: count}

    def get(self, topic: str) -> int:
        return self.counts[topic]

    def load(self, topic: str) -> int:
        return self.counts[topic]


class _Cache:
    keeps_bytes = False
    settled = True

    def __init__(self, routes: list[Route]) -> None:
        self.routes_by_topic: dict[str, dict[str, Route]] = {}
        for route in routes:
            self.routes_by_topic.setdefault(route.topic, {})[route.tenant] = route

    def get(self, topic: str, tenant: str) -> Route | None:
        return self.routes_by_topic.get(topic, {}).get(tenant)


def _router(count: int, routes: list[Route]) -> Router:
    return Router(_Counts(count), _Cache(routes), {})  # type: ignore[arg-type]


def test_unrouted_keys_hash_by_the_base_and_routed_tenants_follow_their_routes() -> None:
    pinned = Route(topic=TOPIC, tenant="pinned", partitions=(20,), epoch=1)
    sharded = Route(topic=TOPIC, tenant="big", partitions=(13, 17), epoch=1)
    router = _router(24, [_base(12), pinned, sharded])
    keys = [f"tenant-{i}".encode() for i in range(300)]
    for key in keys:
        expected = java_partition(key, 12)
        assert router.partition_for(TOPIC, key) == (expected, RoutingPath.HASHED)
        assert router.plain_choice(TOPIC, key, 24) == (expected, RoutingPath.HASHED.value)
    assert sum(java_partition(k, 24) != java_partition(k, 12) for k in keys) > 100  # what it saves
    assert router.partition_for(TOPIC, b"pinned") == (20, RoutingPath.ROUTED)
    assert router.partition_for(TOPIC, b"user-1", tenant="big")[0] in (13, 17)
    # The empty key names no tenant: the base route never places a record.
    assert router.partition_for(TOPIC, b"") == (java_partition(b"", 12), RoutingPath.HASHED)
    assert router.plain_choice(TOPIC, b"", 24) == (java_partition(b"", 12), RoutingPath.HASHED.value)
    # Without a base: the count, as the Java client.
    plain = _router(24, [pinned])
    assert plain.partition_for(TOPIC, keys[0]) == (java_partition(keys[0], 24), RoutingPath.HASHED)


def test_the_modulus_is_the_base_only_below_the_count() -> None:
    assert hash_modulus(24, 12) == 12
    assert hash_modulus(12, 12) == 12
    assert hash_modulus(12, None) == 12
    assert hash_modulus(12, 24) == 12  # a base above the count would name missing partitions


def test_the_hashing_check_tells_a_producer_hashing_by_the_count_from_routed_records() -> None:
    from routing_app.topics.hashing import HashingCheck

    pinned = Route(topic=TOPIC, tenant="pinned", partitions=(20,), epoch=1)
    check = HashingCheck(partitions=24, base=12)
    keys = [f"k-{i}".encode() for i in range(200)]
    for key in keys:
        check.judge(key, java_partition(key, 12), {"pinned": pinned})  # a RoutingProducer
    check.judge(b"pinned", 20, {"pinned": pinned})
    check.judge(None, 5, {})  # keyless: anywhere is right, not counted
    assert (check.records, check.as_routed, check.by_count, check.elsewhere) == (201, 201, 0, 0)
    moved = [k for k in keys if java_partition(k, 24) != java_partition(k, 12)]
    for key in keys:
        check.judge(key, java_partition(key, 24), {"pinned": pinned})  # a plain Kafka producer
    assert check.by_count == len(moved) and check.as_routed == 201 + len(keys) - len(moved)
    assert [k for k, _ in check.samples] == moved[:10]
    check.judge(b"pinned", java_partition(b"pinned", 24), {"pinned": pinned})
    assert check.elsewhere == 1  # a routed tenant off its route: not judged a hashing producer
