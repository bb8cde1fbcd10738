"""Writes the route writer did not make, on a cluster without ACLs (issue 12, item 1): what the
writer can check it refuses, whoever wrote it.

With ACLs (tests/e2e/test_security.py) nobody but the worker's principal can write the routes
topic, and producers cannot write the control topic. Without them anyone can; these tests write
as such a stranger does, with plain confluent-kafka.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import pytest

from routing_app.client import RoutingProducer, java_partition
from routing_app.codec import registry_client
from routing_app.config import Settings
from routing_app.routes import Route, RouteCodec
from tests.e2e.support import Worker, cli, wait_for
from tests.e2e.test_bad_input import forge, routes_records
from tests.e2e.test_routing import producer_conf

pytestmark = pytest.mark.integration


def test_a_route_the_writer_did_not_write_is_undone_and_later_decisions_still_count(
    routing_settings: Settings, worker: Worker, data_topic: Callable[[int], str]
) -> None:
    s = routing_settings
    topic = data_topic(6)
    tenant = "forged-tenant"
    hashed = java_partition(tenant.encode(), 6)
    target, elsewhere, third = ((hashed + i) % 6 for i in (1, 2, 3))
    codec = RouteCodec(registry_client(s.registry_url), s.routes_topic)
    key = codec.encode_key(topic, tenant)
    foreign_before = worker.get("/writer/stats")["foreign_routes"]

    def newest_under_key() -> Route | None:
        mine = [v for _, k, v in routes_records(s) if k == key]
        return codec.decode(key, mine[-1])[2] if mine else None

    out = cli(s, "routes", "pin", topic, tenant, "-p", str(target))
    assert out.returncode == 0, out.stderr
    with RoutingProducer(producer_conf(s)) as producer:
        producer.wait_ready(30)
        pinned = wait_for(lambda: producer.route_for(topic, tenant), what="the pinned route")
        assert pinned.partitions == (target,)

        # 1. An epoch the writer never issued: before, it outranked every later decision (readers
        # drop lower epochs as stale), so an operator's pin printed success and did nothing.
        forged = dataclasses.replace(pinned, partitions=(elsewhere,), epoch=10**12)
        forged_at = time.monotonic()
        end = forge(s, s.routes_topic, [(key, codec.encode(forged))])
        assert producer.cache is not None
        # Past the forged record, and the route is the writer's again: the repair came after.
        wait_for(
            lambda: (
                producer.cache.stats().position >= end  # type: ignore[union-attr]
                and producer.route_for(topic, tenant) == pinned
            ),
            timeout=30,
            what="the writer to put its route back over the forged epoch",
        )
        print(
            f"forged epoch undone for a running producer in {time.monotonic() - forged_at:.3f} s"
        )  # a figure for the README, not a bound
        assert newest_under_key() == pinned
        out = cli(s, "routes", "pin", topic, tenant, "-p", str(third))
        assert out.returncode == 0, out.stderr
        moved = wait_for(
            lambda: (r := producer.route_for(topic, tenant)) is not None and r.partitions == (third,) and r,
            timeout=60,
            what="the operator's pin after the forged route",
        )
        assert moved.epoch < forged.epoch
        assert producer.send(topic, b"v", tenant.encode()).result(10).partition == third

        # 2. A tombstone the writer did not write: the route is written again.
        forge(s, s.routes_topic, [(key, None)])
        wait_for(
            lambda: newest_under_key() == moved,
            timeout=30,
            what="the writer to write the route again over a forged tombstone",
        )
        wait_for(lambda: producer.route_for(topic, tenant) == moved, what="the producer")

        # 3. An older route after the current one: readers that follow the topic skip it, but
        # compaction would leave it as the key's only record for the next reader.
        old = dataclasses.replace(moved, partitions=(elsewhere,), epoch=1)
        forge(s, s.routes_topic, [(key, codec.encode(old))])
        wait_for(
            lambda: newest_under_key() == moved,
            timeout=30,
            what="the writer to write the route again after an older one",
        )
        assert producer.route_for(topic, tenant) == moved
        assert producer.cache is not None and producer.cache.stats().out_of_order >= 1

        # 4. A route for a tenant the writer never routed: removed (a tombstone after it).
        ghost_key = codec.encode_key(topic, "ghost")
        ghost = dataclasses.replace(pinned, tenant="ghost", partitions=(elsewhere,), epoch=1)
        forge(s, s.routes_topic, [(ghost_key, codec.encode(ghost))])
        wait_for(
            lambda: [v for _, k, v in routes_records(s) if k == ghost_key][-1:] == [None],
            timeout=30,
            what="the writer to remove a route for a tenant it never routed",
        )
        wait_for(lambda: producer.route_for(topic, "ghost") is None, what="the producer")

    assert worker.get("/writer/stats")["foreign_routes"] >= foreign_before + 3
    assert "a route the writer did not write" in worker.log()


def test_answers_and_commands_are_read_only_from_their_own_topics(
    routing_settings: Settings, worker: Worker, data_topic: Callable[[int], str]
) -> None:
    """A producer's answer on the control topic, or a command on the answers topic, is skipped:
    ACLs give producers the answers topic only, and operators the control topic only."""
    s = routing_settings
    topic = data_topic(2)
    before = worker.get("/writer/stats")["messages_misplaced"]
    forge(s, s.control_topic, [(b"someone", b"someone")], headers=[("routing.type", b"producer-closed")])
    out = cli(s, "routes", "pin", topic, "misplaced", "-p", "1")  # through the control topic
    assert out.returncode == 0, out.stderr
    forge(s, s.answers_topic, [(b"x", b"a command does not belong here")])
    wait_for(
        lambda: worker.get("/writer/stats")["messages_misplaced"] >= before + 2,
        what="both misplaced records to be counted",
    )
